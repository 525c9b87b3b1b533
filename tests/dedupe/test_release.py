"""The release policy as plain functions: when an incident is released, and what each
person gets (nothing, wait, hold, a notice, an amendment)."""

from datetime import UTC, datetime, timedelta

import pytest

from services.common.messages import ReleasePolicy
from services.dedupe.release import (
    Action,
    PersonView,
    ReleaseReason,
    decide,
    incident_release_reason,
    missing_records,
)

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
POLICY = ReleasePolicy(settle_window_seconds=300)


def person(**overrides) -> PersonView:
    base = dict(live_records=1, any_on_hold=False, agency_ids=frozenset({"gp"}),
                categories=frozenset({"clinical_notes"}), first_seen_at=T0, changed_at=T0,
                notified_version=0, notified_agency_ids=frozenset(),
                notified_categories=frozenset())
    base.update(overrides)
    return PersonView(**base)


class TestIncidentRelease:
    def test_held_until_every_expected_agency_is_complete(self):
        assert incident_release_reason(["gp", "lab"], {"gp"}, POLICY, False, T0) is None
        assert incident_release_reason(["gp", "lab"], {"gp", "lab"}, POLICY, False, T0) \
            == ReleaseReason.COMPLETE

    def test_deadline_releases_whatever_is_missing(self):
        policy = ReleasePolicy(hold_deadline=T0 + timedelta(hours=1))
        assert incident_release_reason(["gp", "lab"], {"gp"}, policy, False, T0) is None
        assert incident_release_reason(["gp", "lab"], {"gp"}, policy, False,
                                       T0 + timedelta(hours=1)) == ReleaseReason.DEADLINE

    def test_manual_release_wins(self):
        assert incident_release_reason(["gp"], set(), POLICY, True, T0) == ReleaseReason.MANUAL

    def test_no_expected_agencies_and_no_deadline_waits_for_the_coordinator(self):
        assert incident_release_reason([], set(), POLICY, False, T0) is None

    def test_an_agency_with_records_missing_is_not_complete_until_the_deadline(self):
        policy = ReleasePolicy(hold_deadline=T0 + timedelta(hours=1))
        missing = {"lab": 1}
        assert incident_release_reason(["gp", "lab"], {"gp", "lab"}, policy, False, T0,
                                       missing) is None
        assert incident_release_reason(["gp", "lab"], {"gp", "lab"}, policy, False,
                                       T0 + timedelta(hours=1), missing) \
            == ReleaseReason.DEADLINE_MISSING
        assert incident_release_reason(["gp", "lab"], {"gp", "lab"}, policy, True, T0,
                                       missing) == ReleaseReason.MANUAL

    def test_missing_records_are_what_a_completion_announced_and_never_arrived(self):
        assert missing_records({"gp": 3, "lab": 2}, {"gp": 3, "lab": 1}) == {"lab": 1}
        assert missing_records({"gp": 3}, {"gp": 5}) == {}  # sent after the completion
        assert missing_records({"gp": 2}, {}) == {"gp": 2}


class TestPersonDecision:
    def test_nothing_is_sent_before_release(self):
        assert decide(person(), None, POLICY, T0).action == Action.WAIT

    def test_records_present_at_release_go_out_with_it(self):
        assert decide(person(), T0 + timedelta(seconds=1), POLICY, T0 + timedelta(seconds=1)
                      ).action == Action.NOTIFY

    def test_a_new_person_after_release_waits_for_the_settle_window(self):
        released = T0
        late = person(first_seen_at=T0 + timedelta(minutes=10),
                      changed_at=T0 + timedelta(minutes=10))
        waiting = decide(late, released, POLICY, T0 + timedelta(minutes=12))
        assert waiting.action == Action.WAIT
        assert waiting.not_before == T0 + timedelta(minutes=15)
        assert decide(late, released, POLICY, T0 + timedelta(minutes=15)).action == Action.NOTIFY

    def test_a_hold_blocks_the_notice_until_lifted(self):
        assert decide(person(any_on_hold=True), T0, POLICY, T0).action == Action.HOLD

    def test_everything_withdrawn_means_no_notice(self):
        assert decide(person(live_records=0), T0, POLICY, T0).action == Action.NOTHING

    @pytest.mark.parametrize(("agencies", "categories", "amend_on", "expected"), [
        ({"gp"}, {"clinical_notes"}, "new_agency_or_category", Action.NOTHING),
        ({"gp", "lab"}, {"clinical_notes"}, "new_agency_or_category", Action.AMEND),
        ({"gp"}, {"clinical_notes", "lab_results"}, "new_agency_or_category", Action.AMEND),
        ({"gp"}, {"clinical_notes", "lab_results"}, "new_agency", Action.NOTHING),
        ({"gp", "lab"}, {"clinical_notes"}, "new_agency", Action.AMEND),
        ({"gp", "lab"}, {"clinical_notes", "lab_results"}, "never", Action.NOTHING),
    ])
    def test_amendment_only_when_something_new_is_added(self, agencies, categories, amend_on,
                                                        expected):
        notified = person(agency_ids=frozenset(agencies), categories=frozenset(categories),
                          notified_version=1, notified_agency_ids=frozenset({"gp"}),
                          notified_categories=frozenset({"clinical_notes"}),
                          changed_at=T0 + timedelta(hours=1))
        policy = ReleasePolicy(settle_window_seconds=0, amend_on=amend_on)
        assert decide(notified, T0, policy, T0 + timedelta(hours=2)).action == expected
