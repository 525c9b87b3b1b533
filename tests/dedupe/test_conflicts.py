"""Contacts and holds that agencies contradict for one person (conflicts.py), as plain rules:
no database, no Kafka. Before issue 18 the newest contact won whoever gave it, and one
agency's hold held the person with nobody told."""

from datetime import UTC, datetime

import pytest

from services.common.crypto import Sealer, generate_key_spec
from services.common.messages import (
    ReleasePolicy,
    SealedRecipient,
    notice_sealing_context,
    record_sealing_context,
)
from services.dedupe.conflicts import (
    Claim,
    DecisionRefused,
    check_decision,
    contact_key,
    contact_review_id,
    hold_review_id,
    route,
)
from services.dedupe.identity import IncidentIdentity, ReviewDecision
from services.dedupe.notices import NoticeRecord, build_notice
from services.dedupe.release import Action, PersonView, decide
from services.dedupe.resolver import Resolver
from testkit.messages import record_message
from tests.dedupe.conftest import AROHA

INC = "inc-c"
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
M1, M2 = contact_key("mobile", "+64211234567"), contact_key("mobile", "+64229998888")
E1 = contact_key("email", "aroha@example.nz")
GP, LAB, GP2 = ("gp", "gp-1"), ("lab", "lab-1"), ("gp", "gp-2")


def claim(key, version=1, **kw) -> Claim:  # noqa: ANN001
    return Claim(key, version, **kw)


def test_contact_keys_compare_normalised_values_and_never_hold_them():
    assert contact_key("email", " Aroha@Example.NZ ") == contact_key("email", "aroha@example.nz")
    assert contact_key("mobile", "+64 21 123 4567") == M1
    assert contact_key("mobile", "+64211234567") != M2
    assert contact_key("email", None) is None and contact_key("email", "") is None
    assert isinstance(M1, int)


def test_two_agencies_differing_mobiles_send_by_email_and_ask_a_coordinator():
    claims = [claim(GP, mobile=M1, email=E1), claim(LAB, mobile=M2)]
    r = route(INC, claims, {})
    assert r.excluded == {"mobile"} and not r.held_for_contact and not r.held
    (conflict,) = r.conflicts
    assert conflict.kind == "contact_conflict" and conflict.reason == "mobile_differs"
    assert conflict.review_id == contact_review_id(INC, "mobile", claims)
    assert (conflict.a, conflict.b) == (GP, LAB)
    assert conflict.evidence["fallback"] == ["email"]
    assert conflict.evidence["agencies"] == ["gp", "lab"]
    # Who agrees with whom, by group number; record ids only, never a value.
    assert [(r["source_record_id"], r["group"]) for r in conflict.evidence["records"]] == [
        ("gp-1", 1), ("lab-1", 2)]
    assert "+64" not in str(conflict)


def test_agreeing_agencies_and_one_agency_alone_are_no_conflict():
    assert route(INC, [claim(GP, mobile=M1), claim(LAB, mobile=M1)], {}).conflicts == ()
    # One agency's two records that differ: its own affair (newest wins, as before).
    assert route(INC, [claim(GP, mobile=M1), claim(GP2, mobile=M2)], {}).conflicts == ()
    # Only one agency gives a mobile: nothing contradicts it.
    assert route(INC, [claim(GP, mobile=M1), claim(LAB, email=E1)], {}).excluded == frozenset()


def test_a_conflict_between_two_agencies_not_involving_the_first_record_names_that_pair():
    """The GP's two records differ from each other (its own affair) and the lab agrees with
    the first: the contest is between the GP's second record and the lab. The item names that
    pair — it used to look for a partner of the first record only, found none, and the
    StopIteration failed the incident's every tick (its state dropped and rebuilt each time:
    a 400k incident stalled for good)."""
    claims = [claim(GP, mobile=M1), claim(GP2, mobile=M2), claim(LAB, mobile=M1)]
    r = route(INC, claims, {})
    (conflict,) = r.conflicts
    assert (conflict.kind, conflict.a, conflict.b) == ("contact_conflict", GP2, LAB)
    assert r.excluded == {"mobile"}


def test_no_uncontested_channel_holds_the_person_and_post_is_one():
    claims = [claim(GP, mobile=M1), claim(LAB, mobile=M2)]
    assert route(INC, claims, {}).held_for_contact
    with_address = [claim(GP, mobile=M1, address=True), claim(LAB, mobile=M2)]
    r = route(INC, with_address, {})
    assert not r.held_for_contact and r.conflicts[0].evidence["fallback"] == ["postal"]


def test_a_confirmed_contact_is_used_and_keep_fallback_releases_without_it():
    claims = [claim(GP, mobile=M1), claim(LAB, mobile=M2)]
    rid = contact_review_id(INC, "mobile", claims)
    confirmed = route(INC, claims, {rid: ("use_contact", LAB)})
    assert confirmed.chosen == {"mobile": LAB} and confirmed.excluded == frozenset()
    assert not confirmed.held_for_contact
    fallback = route(INC, claims, {rid: ("keep_fallback", None)})
    # Decided: no longer held, and no channel left → dispatch lists the person unreachable.
    assert fallback.excluded == {"mobile"} and not fallback.held_for_contact


def test_a_new_version_of_a_contesting_record_asks_again():
    before = [claim(GP, mobile=M1), claim(LAB, mobile=M2)]
    after = [claim(GP, mobile=M1), claim(LAB, 2, mobile=M2)]
    rid = contact_review_id(INC, "mobile", before)
    assert contact_review_id(INC, "mobile", after) != rid
    assert route(INC, after, {rid: ("use_contact", LAB)}).held_for_contact


def test_a_representative_is_reached_on_their_own_channels_so_nothing_is_contested():
    claims = [claim(GP, mobile=M1, representative=True, on_hold=True), claim(LAB, mobile=M2)]
    assert all(c.kind == "hold_conflict" for c in route(INC, claims, {}).conflicts)


def test_one_agencys_hold_holds_the_person_and_is_shown_to_a_coordinator():
    claims = [claim(GP, on_hold=True, email=E1), claim(LAB, email=E1)]
    r = route(INC, claims, {})
    assert r.held
    (conflict,) = r.conflicts
    assert conflict.kind == "hold_conflict" and conflict.reason == "hold_not_shared"
    assert conflict.evidence["holding_agencies"] == ["gp"]
    assert conflict.evidence["other_agencies"] == ["lab"]
    rid = hold_review_id(INC, claims)
    assert route(INC, claims, {rid: ("keep_held", None)}).held
    released = route(INC, claims, {rid: ("release", None)})
    assert not released.held and released.withheld == {GP}


def test_a_hold_every_agency_shares_needs_no_coordinator():
    claims = [claim(GP, on_hold=True), claim(LAB, on_hold=True)]
    r = route(INC, claims, {})
    assert r.held and r.conflicts == ()
    assert route(INC, [claim(GP, on_hold=True), claim(GP2)], {}).conflicts == ()


def test_a_released_hold_leaves_the_holding_agencys_contacts_out_of_the_question():
    claims = [claim(GP, on_hold=True, mobile=M1), claim(LAB, mobile=M2)]
    rid = hold_review_id(INC, claims)
    released = route(INC, claims, {rid: ("release", None)})
    assert released.excluded == frozenset()  # the lab's mobile alone is told
    assert [c.kind for c in released.conflicts] == ["hold_conflict"]


@pytest.mark.parametrize(("kind", "decision", "record", "code"), [
    ("pair", "use_contact", None, "review.decision_not_applicable"),
    ("contact_conflict", "merge", None, "review.decision_not_applicable"),
    ("hold_conflict", "keep_fallback", None, "review.decision_not_applicable"),
    ("contact_conflict", "use_contact", None, "review.record_not_in_item"),
    ("contact_conflict", "use_contact", ("gp", "other"), "review.record_not_in_item"),
    ("hold_conflict", "release", ("gp", "gp-1"), "review.record_not_applicable"),
])
def test_a_decision_that_does_not_fit_the_item_is_refused(kind, decision, record, code):  # noqa: ANN001
    evidence = {"records": [{"agency_id": "gp", "source_record_id": "gp-1"}]}
    with pytest.raises(DecisionRefused) as refused:
        check_decision(kind, decision, record, evidence)
    assert refused.value.code == code
    check_decision("contact_conflict", "use_contact", ("gp", "gp-1"), evidence)  # fits


def _person(**overrides) -> PersonView:
    base = dict(live_records=2, any_on_hold=False, agency_ids=frozenset({"gp", "lab"}),
                categories=frozenset({"clinical_notes"}), first_seen_at=T0, changed_at=T0,
                notified_version=0, notified_agency_ids=frozenset(),
                notified_categories=frozenset())
    return PersonView(**{**base, **overrides})


def test_release_rules_hold_for_contact_and_resend_after_a_confirmation():
    policy = ReleasePolicy(settle_window_seconds=0)
    assert decide(_person(held_for_contact=True), T0, policy, T0).action == Action.HOLD_CONTACT
    told = dict(notified_version=1, notified_agency_ids=frozenset({"gp", "lab"}),
                notified_categories=frozenset({"clinical_notes"}))
    assert decide(_person(**told), T0, policy, T0).action == Action.NOTHING
    assert decide(_person(**told, resend=True), T0, policy, T0).action == Action.AMEND


SEALER = Sealer(generate_key_spec("conflicts-test"))


def _record(agency_id: str, rid: str, **personal) -> NoticeRecord:
    sealed = SEALER.seal(personal, record_sealing_context(INC, agency_id, rid, 1))
    return NoticeRecord(INC, agency_id, rid, 1, sealed, ["clinical_notes"], 1, "en", T0)


def _recipient(notice) -> dict:  # noqa: ANN001
    return SealedRecipient.model_validate(SEALER.open(
        notice.sealed, notice_sealing_context(notice.notice_id))).recipient.model_dump(
        exclude_none=True)


def test_the_notice_leaves_a_contested_contact_out_and_uses_a_confirmed_one():
    records = [_record("gp", "gp-1", email="aroha@example.nz", mobile="+64211234567"),
               _record("lab", "lab-1", mobile="+64229998888")]
    claims = [claim(GP, mobile=M1, email=E1), claim(LAB, mobile=M2)]
    contested = build_notice(SEALER, INC, "P-1", 1, records, {}, T0, route(INC, claims, {}))
    assert contested.channels == ["email"]
    assert "mobile" not in _recipient(contested)
    rid = contact_review_id(INC, "mobile", claims)
    confirmed = build_notice(SEALER, INC, "P-1", 2, records, {}, T0,
                             route(INC, claims, {rid: ("use_contact", LAB)}))
    assert confirmed.channels == ["email", "sms"]
    assert _recipient(confirmed)["mobile"] == "+64229998888"


def test_a_released_hold_conflict_neither_names_nor_uses_the_holding_agency():
    records = [_record("gp", "gp-1", email="gp-knows@example.nz"),
               _record("lab", "lab-1", mobile="+64229998888")]
    claims = [claim(GP, on_hold=True, email=E1), claim(LAB, mobile=M2)]
    rid = hold_review_id(INC, claims)
    notice = build_notice(SEALER, INC, "P-1", 1, records, {}, T0,
                          route(INC, claims, {rid: ("release", None)}))
    assert [a.agency_id for a in notice.agencies] == ["lab"]
    assert notice.channels == ["sms"] and "email" not in _recipient(notice)


# --- through the identity state (identity.py, a real resolver) ---------------------------------

def _identity_with(*messages) -> IncidentIdentity:  # noqa: ANN002
    state = IncidentIdentity(INC, SEALER, Resolver())
    for message in messages:
        assert state.apply_record(message)
    state.settle(T0)
    return state


def _decision(conflict, decision: str, chosen=None) -> ReviewDecision:  # noqa: ANN001
    return ReviewDecision(conflict.review_id, conflict.a, conflict.b, False, conflict.kind,
                          decision, chosen)


RELEASE_NOW = ReleasePolicy(settle_window_seconds=0)


def test_identity_sends_by_the_uncontested_channel_then_amends_once_a_contact_is_confirmed():
    state = _identity_with(record_message(SEALER, INC, "gp", "gp-1", **AROHA),
                           record_message(SEALER, INC, "lab", "lab-1",
                                          **{**AROHA, "mobile": "+64229998888"}))
    (due,) = state.release(T0, RELEASE_NOW, T0)
    assert due.version == 1 and due.route.excluded == {"mobile"}
    (conflict,) = state.conflicts()
    assert conflict.kind == "contact_conflict"
    decision = _decision(conflict, "use_contact", ("lab", "lab-1"))
    state.apply_decisions([decision])
    assert state.awaits_resend(decision)  # the pipeline keeps it pending until the amendment
    (again,) = state.release(T0, RELEASE_NOW, T0)
    assert again.version == 2 and again.route.chosen == {"mobile": ("lab", "lab-1")}
    assert not state.awaits_resend(decision)
    assert state.release(T0, RELEASE_NOW, T0) == []  # once


def test_identity_holds_a_person_with_only_contested_channels_until_a_decision():
    no_email = {k: v for k, v in AROHA.items() if k != "email"}
    state = _identity_with(record_message(SEALER, INC, "gp", "gp-1", **no_email),
                           record_message(SEALER, INC, "lab", "lab-1",
                                          **{**no_email, "mobile": "+64229998888"}))
    assert state.release(T0, RELEASE_NOW, T0) == []
    (person,) = state.persons.values()
    assert person.status == "held_contact"
    (conflict,) = state.conflicts()
    state.apply_decisions([_decision(conflict, "use_contact", ("gp", "gp-1"))])
    (due,) = state.release(T0, RELEASE_NOW, T0)
    assert due.version == 1 and due.route.chosen == {"mobile": ("gp", "gp-1")}


def test_identity_releases_the_other_agencies_part_of_a_held_person_and_amends_on_lifting():
    hold = {"reason": "health_prejudice"}
    state = _identity_with(record_message(SEALER, INC, "gp", "gp-1", hold=hold, **AROHA),
                           record_message(SEALER, INC, "lab", "lab-1",
                                          categories=("lab_results",), **AROHA))
    assert state.release(T0, RELEASE_NOW, T0) == []
    (person,) = state.persons.values()
    assert person.status == "held"
    (conflict,) = state.conflicts()
    assert conflict.kind == "hold_conflict"
    state.apply_decisions([_decision(conflict, "release")])
    (due,) = state.release(T0, RELEASE_NOW, T0)
    assert due.view.agency_ids == {"lab"} and due.route.withheld == {("gp", "gp-1")}
    assert state.records["gp", "gp-1"].told_by is None  # never told about the held record
    # The gp lifts its hold (a new version without one): the person is told about it now.
    assert state.apply_record(record_message(SEALER, INC, "gp", "gp-1", version=2, **AROHA))
    state.settle(T0)
    (amend,) = state.release(T0, RELEASE_NOW, T0)
    assert amend.version == 2 and amend.view.agency_ids == {"gp", "lab"}


def test_a_coordinators_contact_choice_survives_a_rebuild_from_stored_rows():
    from services.dedupe.identity import IdentityState, RecordMeta, StoredIdentity, StoredRecord

    messages = [record_message(SEALER, INC, "gp", "gp-1", **AROHA),
                record_message(SEALER, INC, "lab", "lab-1", **{**AROHA, "mobile": "+64229998888"})]
    live = _identity_with(*messages)
    (conflict,) = live.conflicts()
    decision = _decision(conflict, "use_contact", ("lab", "lab-1"))
    person_id = live.records["gp", "gp-1"].person_id
    stored = StoredIdentity(
        [StoredRecord((m.agency_id, m.source_record_id),
                      RecordMeta(1, person_id, False, False, tuple(m.data_categories)), m.sealed)
         for m in messages], {}, [decision])
    rebuilt = IdentityState(SEALER).build(INC, stored)
    assert rebuilt.route(person_id).chosen == {"mobile": ("lab", "lab-1")}
    assert rebuilt.resend == set()  # a rebuild's decisions are state, not news


@pytest.mark.parametrize("amend_on", ["new_agency_or_category", "never"])
def test_a_released_hold_conflict_is_announced_held_and_its_lifting_amends_with_the_agency(
        amend_on):
    """The coordinator releases the lab's part while the GP holds its record (s 116): the
    notice names the lab only, and the call centre is told the person is held (part of what
    they are owed is held back). When the GP lifts its hold, the GP's part is owed — s 116
    delayed it, it never excused it — so an amendment names the GP, even in an incident that
    sends no amendments otherwise, and the hold's end is announced."""
    held = {"reason": "health_prejudice"}
    state = _identity_with(record_message(SEALER, INC, "gp", "gp-1", hold=held, **AROHA),
                           record_message(SEALER, INC, "lab", "lab-1",
                                          categories=("lab_results",), **AROHA))
    policy = ReleasePolicy(settle_window_seconds=0, amend_on=amend_on)
    assert state.release(T0, policy, T0) == []
    assert state.take_hold_changes() == []  # held before any notice: nothing to look up
    (conflict,) = state.conflicts()
    state.apply_decisions([_decision(conflict, "release")])
    (first,) = state.release(T0, policy, T0)
    assert first.version == 1 and first.view.agency_ids == {"lab"}
    assert state.take_hold_changes() == [(first.notice_person_id, True)]
    person = state.persons[first.person_id]
    assert person.status == "part_held"

    state.apply_record(record_message(SEALER, INC, "gp", "gp-1", version=2, **AROHA))
    state.settle(T0)
    (amended,) = state.release(T0, policy, T0)
    assert (amended.notice_person_id, amended.version) == (first.notice_person_id, 2)
    assert amended.view.agency_ids == {"gp", "lab"}
    assert state.take_hold_changes() == [(first.notice_person_id, False)]
    assert state.persons[first.person_id].status == "notified"
    assert state.release(T0, policy, T0) == [] and state.take_hold_changes() == []  # once


def test_a_released_hold_conflict_stays_announced_when_nothing_new_arrives():
    """Notified by the lab, then the GP's held record joins: held (announced). The
    coordinator releases: nothing new to send (the GP's part is still held back), so the
    person stays held for the call centre — not announced as no longer held."""
    state = _identity_with(record_message(SEALER, INC, "lab", "lab-1", **AROHA))
    (first,) = state.release(T0, RELEASE_NOW, T0)
    state.apply_record(record_message(SEALER, INC, "gp", "gp-1",
                                      hold={"reason": "health_prejudice"}, **AROHA))
    state.settle(T0)
    assert state.release(T0, RELEASE_NOW, T0) == []
    assert state.take_hold_changes() == [(first.notice_person_id, True)]
    (conflict,) = state.conflicts()
    state.apply_decisions([_decision(conflict, "release")])
    assert state.release(T0, RELEASE_NOW, T0) == []
    assert state.take_hold_changes() == []
    assert state.persons[state.records["lab", "lab-1"].person_id].status == "part_held"


def test_a_hold_on_a_new_version_of_the_only_told_record_is_announced_for_its_notice():
    """Notified about one record, then the agency sends a new version of it carrying a hold
    (s 116): the person can still phone with the reference of the notice they have, so the
    hold is announced for that notice's lineage — not lost because the record's version moved."""
    state = _identity_with(record_message(SEALER, INC, "lab", "lab-1", **AROHA))
    (first,) = state.release(T0, RELEASE_NOW, T0)
    assert state.take_hold_changes() == []
    state.apply_record(record_message(SEALER, INC, "lab", "lab-1", version=2,
                                      hold={"reason": "health_prejudice"}, **AROHA))
    state.settle(T0)
    assert state.release(T0, RELEASE_NOW, T0) == []
    assert state.take_hold_changes() == [(first.notice_person_id, True)]
    assert state.persons[state.records["lab", "lab-1"].person_id].status == "held"


@pytest.mark.parametrize("same_details", [True, False])
def test_a_hold_lifted_by_a_new_version_of_the_only_told_record_is_announced_ended(same_details):
    """The record the person was told about comes again with a hold (announced held for the
    notice they have), then once more without it: the end of the hold is announced for that
    same notice's reference and the person is no longer held — whether the lifted version
    tells them anything new (an amendment) or nothing (same details)."""
    state = _identity_with(record_message(SEALER, INC, "lab", "lab-1", **AROHA))
    (first,) = state.release(T0, RELEASE_NOW, T0)
    state.apply_record(record_message(SEALER, INC, "lab", "lab-1", version=2,
                                      hold={"reason": "health_prejudice"}, **AROHA))
    state.settle(T0)
    assert state.release(T0, RELEASE_NOW, T0) == []
    assert state.take_hold_changes() == [(first.notice_person_id, True)]
    extra = {} if same_details else {"categories": ("clinical_notes", "prescriptions")}
    state.apply_record(record_message(SEALER, INC, "lab", "lab-1", version=3, **AROHA, **extra))
    state.settle(T0)
    due = state.release(T0, RELEASE_NOW, T0)
    # A new category is an amendment in the same lineage (never a first notice under a new
    # reference); the same details tell them nothing new.
    assert [(n.notice_person_id, n.version) for n in due] == (
        [] if same_details else [(first.notice_person_id, 2)])
    assert state.take_hold_changes() == [(first.notice_person_id, False)]
    person = state.persons[state.records["lab", "lab-1"].person_id]
    assert person.status == "notified" and person.notice_person_id == first.notice_person_id
    assert state.release(T0, RELEASE_NOW, T0) == [] and state.take_hold_changes() == []  # once
