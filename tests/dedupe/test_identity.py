"""The identity state (identity.py) with a real resolver and no database: records in, persons
and release decisions out, notice lineage across re-identification, rebuild, review pairs."""

import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest

from services.common.crypto import Sealer, generate_key_spec
from services.common.messages import ReleasePolicy
from services.dedupe.identity import (
    IdentityState,
    IncidentIdentity,
    PersonMeta,
    RecordMeta,
    ReviewDecision,
    StoredIdentity,
    StoredRecord,
    Withdrawn,
)
from services.dedupe.resolver import Resolver
from testkit.messages import record_message
from tests.dedupe.conftest import AROHA, HEMI
from tests.dedupe.test_reviews import J_TIPENE, JOSEPH_TIPENE

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1)
POLICY = ReleasePolicy(settle_window_seconds=0)
SEALER = Sealer(generate_key_spec("identity-test"))


def identity() -> IncidentIdentity:
    return IncidentIdentity("inc-1", SEALER, Resolver())


def record(agency_id: str, source_record_id: str, person: dict, version: int = 1, **kw):  # noqa: ANN003, ANN201
    return record_message(SEALER, "inc-1", agency_id, source_record_id, version=version,
                          **kw, **person)


def test_records_of_one_person_settle_into_one_person_awaiting_a_decision():
    state = identity()
    assert state.apply_record(record("gp", "gp-1", AROHA))
    assert state.apply_record(record("lab", "lab-9", AROHA, categories=("lab_results",)))
    assert state.apply_record(record("gp", "gp-2", HEMI))
    state.settle(T0)

    aroha = state.records["gp", "gp-1"].person_id
    assert state.records["lab", "lab-9"].person_id == aroha
    assert state.records["gp", "gp-2"].person_id not in (None, aroha)
    assert state.members[aroha] == {("gp", "gp-1"), ("lab", "lab-9")}
    assert state.dirty == set(state.persons) and len(state.persons) == 2
    assert set(state.take_records()) == {("gp", "gp-1"), ("lab", "lab-9"), ("gp", "gp-2")}
    assert set(state.take_persons()) == set(state.persons)
    assert state.take_records() == {} and state.take_persons() == {}  # taken once
    view = state.view(aroha)
    assert (view.live_records, view.agency_ids) == (2, frozenset({"gp", "lab"}))
    assert view.categories == frozenset({"clinical_notes", "lab_results"})


def test_a_replayed_or_older_version_changes_nothing():
    state = identity()
    assert state.apply_record(record("gp", "gp-1", AROHA, version=2))
    state.settle(T0)
    state.take_records()
    assert not state.apply_record(record("gp", "gp-1", AROHA, version=2))
    assert not state.apply_record(record("gp", "gp-1", AROHA, version=1))
    state.settle(NOW)
    assert state.take_records() == {} and state.records["gp", "gp-1"].version == 2


def test_nothing_is_due_before_release_and_each_person_is_notified_once():
    state = identity()
    state.apply_record(record("gp", "gp-1", AROHA))
    state.apply_record(record("gp", "gp-2", HEMI))
    state.settle(T0)
    assert state.release(None, POLICY, NOW) == []
    assert len(state.dirty) == 2  # still waiting for the incident's release

    due = state.release(T0, POLICY, NOW)
    assert [d.version for d in due] == [1, 1]
    assert [d.person_id for d in due] == sorted(state.persons)
    assert all(d.notice_person_id == d.person_id for d in due)
    assert {p.status for p in state.persons.values()} == {"notified"}
    assert state.dirty == set()
    assert state.release(T0, POLICY, NOW) == []


def test_a_held_record_holds_the_person_and_a_withdrawn_person_is_empty():
    state = identity()
    state.apply_record(record("gp", "gp-1", AROHA, hold={"reason": "health_prejudice"}))
    state.apply_record(record("gp", "gp-2", HEMI))
    state.settle(T0)
    aroha, hemi = state.records["gp", "gp-1"].person_id, state.records["gp", "gp-2"].person_id
    state.withdraw(("gp", "gp-2"))
    state.settle(T0)
    assert state.records["gp", "gp-2"].person_id is None and state.persons[hemi].status == "empty"
    assert state.release(T0, POLICY, NOW) == []
    assert state.persons[aroha].status == "held"


def test_a_hold_after_the_notice_is_announced_and_so_is_its_lifting():
    """The call centre must know a notified person is held now (nothing more goes to them):
    a hold that came after the notice is one change (their lineage, True), its lifting another
    (False); a person held before any notice has no notice to look up, so nothing is said."""
    state = identity()
    state.apply_record(record("gp", "gp-1", AROHA))
    state.apply_record(record("gp", "gp-2", HEMI, hold={"reason": "health_prejudice"}))
    state.settle(T0)
    [due] = state.release(T0, POLICY, NOW)
    assert state.take_hold_changes() == []  # Hemi held, never notified: nothing to say
    held = {"reason": "health_prejudice"}
    state.apply_record(record("lab", "lab-9", AROHA, categories=("lab_results",), hold=held))
    state.settle(NOW)
    assert state.release(T0, POLICY, NOW) == []  # the lab's part is not sent: held
    assert state.take_hold_changes() == [(due.notice_person_id, True)]
    assert state.persons[due.person_id].status == "held"
    state.apply_record(record("lab", "lab-9", AROHA, version=2, categories=("lab_results",),
                              hold=held))
    state.settle(NOW)
    assert state.release(T0, POLICY, NOW) == []
    assert state.take_hold_changes() == []  # still held: no second announcement
    state.apply_record(record("lab", "lab-9", AROHA, version=3, categories=("lab_results",)))
    state.settle(NOW)
    [amended] = state.release(T0, POLICY, NOW)  # the hold lifted: the lab's part goes out
    assert amended.notice_person_id == due.notice_person_id and amended.version == 2
    assert state.take_hold_changes() == [(due.notice_person_id, False)]
    assert state.persons[due.person_id].status == "notified"


def test_a_notified_person_re_identified_by_a_merge_gets_an_amendment_in_the_same_lineage():
    state = identity()
    state.apply_record(record("lab", "lab-9", AROHA, categories=("lab_results",)))
    state.settle(T0)
    (first,) = state.release(T0, POLICY, NOW)

    # A GP record of the same person: the person's id becomes the smaller key's.
    state.apply_record(record("gp", "gp-1", AROHA))
    later = NOW + timedelta(minutes=1)
    state.settle(later)
    merged = state.records["gp", "gp-1"].person_id
    assert merged != first.person_id and state.records["lab", "lab-9"].person_id == merged
    assert state.persons[first.person_id].status == "empty"

    (amendment,) = state.release(T0, POLICY, later)
    assert (amendment.person_id, amendment.notice_person_id, amendment.version) == (
        merged, first.person_id, 2)
    assert amendment.view.agency_ids == frozenset({"gp", "lab"})


def test_a_coordinators_merge_joins_an_uncertain_pair():
    state = identity()
    state.apply_record(record("gp", "gp-1", J_TIPENE))
    state.apply_record(record("lab", "lab-1", JOSEPH_TIPENE))
    state.settle(T0)
    assert len({m.person_id for m in state.records.values()}) == 2
    state.take_records()

    state.apply_decisions([ReviewDecision("rev-1", ("gp", "gp-1"), ("lab", "lab-1"), True),
                           ReviewDecision("rev-2", ("gp", "gone"), ("lab", "lab-1"), False)])
    state.settle(NOW)
    assert len({m.person_id for m in state.records.values()}) == 1
    assert state.take_records()  # the moved record is written


def test_rebuilt_state_matches_the_stored_rows_without_rewriting_them():
    state = identity()
    state.apply_record(record("gp", "gp-1", AROHA))
    state.apply_record(record("lab", "lab-9", AROHA))
    state.apply_record(record("gp", "gp-2", HEMI))
    state.withdraw(("gp", "gp-2"))
    state.settle(T0)
    versions = {(m.agency_id, m.source_record_id): m for m in (
        record("gp", "gp-1", AROHA), record("lab", "lab-9", AROHA), record("gp", "gp-2", HEMI))}
    stored = StoredIdentity(
        records=[StoredRecord(key, meta, versions[key].sealed) for key, meta in state.records.items()],
        persons={pid: PersonMeta(T0, T0, p.status, p.dirty) for pid, p in state.persons.items()},
        decisions=[])

    registry = IdentityState(SEALER)
    rebuilt = registry.rebuild("inc-1", 3, stored)
    assert registry.get("inc-1") is rebuilt
    assert rebuilt.members == {p: keys for p, keys in state.members.items() if keys}
    assert rebuilt.dirty == state.dirty
    assert ("gp", "gp-2") not in rebuilt.resolver  # withdrawn records are not matched again
    rebuilt.settle(NOW)
    assert rebuilt.take_records() == {} and rebuilt.take_persons() == {}

    registry.forget_partitions({1, 2})
    assert registry.get("inc-1") is rebuilt
    registry.forget_partitions({3})
    assert registry.get("inc-1") is None


def test_review_pairs_are_listed_when_changed_and_at_most_once_per_interval():
    registry = IdentityState(SEALER, review_sync_interval_s=3600)
    state = registry.rebuild("inc-1", 0, StoredIdentity([], {}, []))
    state.apply_record(record("gp", "gp-1", J_TIPENE))
    state.apply_record(record("lab", "lab-1", JOSEPH_TIPENE))
    state.settle(T0)
    (pair,) = registry.reviews_due(state)
    assert (pair.a, pair.b, pair.why) == (("gp", "gp-1"), ("lab", "lab-1"), "uncertain")
    assert registry.reviews_due(state) is None  # nothing changed since
    state.apply_record(record("gp", "gp-2", HEMI))
    state.settle(NOW)
    assert registry.reviews_due(state) is None  # changed, but listed too recently

    often = IdentityState(SEALER, review_sync_interval_s=0)
    again = often.rebuild("inc-1", 0, StoredIdentity([], {}, []))
    assert often.reviews_due(again) == []  # a rebuilt incident's queue is refreshed once
    assert often.reviews_due(again) is None


def test_a_review_refresh_that_took_long_spaces_out_the_next_one():
    """Listing an incident's review pairs walks all of it: at 200k records under load a
    refresh took most of the 30 s interval, so the walk ate the time records needed (the 400k
    benchmark applied ~50 records/s). The next refresh waits ten times what the last took."""
    registry = IdentityState(SEALER, review_sync_interval_s=0)
    state = registry.rebuild("inc-1", 0, StoredIdentity([], {}, []))
    state.apply_record(record("gp", "gp-1", J_TIPENE))
    state.apply_record(record("lab", "lab-1", JOSEPH_TIPENE))
    state.settle(T0)
    assert len(registry.reviews_due(state)) == 1
    registry.reviews_synced("inc-1", time.monotonic() - 5.0)  # that refresh took 5 s
    state.apply_record(record("gp", "gp-2", HEMI))
    state.settle(NOW)
    assert registry.reviews_due(state) is None  # changed, but due only 50 s after the last
    registry.reviews_synced("inc-1", time.monotonic())  # had it been quick: due at once
    assert len(registry.reviews_due(state)) == 1


def test_withdrawals_and_versions_are_one_sequence_per_record():
    state = identity()
    state.apply_record(record("gp", "gp-1", AROHA))
    assert state.withdraw(("gp", "gp-1"), 1) is Withdrawn.WITHDRAWN
    assert state.apply_record(record("gp", "gp-1", AROHA, version=2))  # the re-send
    state.settle(T0)
    # The replay of everything from the start: v1, its withdrawal, v2 — nothing changes.
    assert not state.apply_record(record("gp", "gp-1", AROHA))
    assert state.withdraw(("gp", "gp-1"), 1) is Withdrawn.IGNORED
    assert not state.apply_record(record("gp", "gp-1", AROHA, version=2))
    meta = state.records["gp", "gp-1"]
    assert (meta.version, meta.withdrawn) == (2, False) and ("gp", "gp-1") in state.resolver
    assert state.withdraw(("gp", "gp-1"), 2) is Withdrawn.WITHDRAWN
    assert state.withdraw(("gp", "gp-1"), 2) is Withdrawn.IGNORED  # replayed
    state.settle(NOW)
    assert meta.person_id is None and ("gp", "gp-1") not in state.resolver


def test_a_withdrawal_of_a_version_not_seen_leaves_a_tombstone_that_outranks_it():
    state = identity()
    # The withdrawal of version 1 arrives first (its version's message lost or late).
    assert state.withdraw(("lab", "lab-1"), 1) is Withdrawn.TOMBSTONE
    assert not state.apply_record(record("lab", "lab-1", AROHA))
    assert ("lab", "lab-1") not in state.resolver
    # A version 1 held, the withdrawal of version 2 (version 2 never seen): withdrawn at 2.
    state.apply_record(record("gp", "gp-1", HEMI))
    assert state.withdraw(("gp", "gp-1"), 2) is Withdrawn.TOMBSTONE
    assert not state.apply_record(record("gp", "gp-1", HEMI, version=2))
    assert state.apply_record(record("gp", "gp-1", HEMI, version=3))
    # Messages from before versioned withdrawals withdraw whatever is held.
    assert state.withdraw(("gp", "gp-1")) is Withdrawn.WITHDRAWN
    assert state.withdraw(("gp", "never-seen")) is Withdrawn.IGNORED


def test_a_told_record_withdrawn_and_sent_again_is_told_again_under_a_new_lineage():
    state = identity()
    state.apply_record(record("gp", "gp-1", AROHA))
    state.settle(T0)
    (first,) = state.release(T0, POLICY, NOW)
    assert state.records["gp", "gp-1"].told_by == first.notice_person_id
    state.withdraw(("gp", "gp-1"), 1)
    state.apply_record(record("gp", "gp-1", {**AROHA, "email": "new@example.nz"}, version=2))
    state.settle(NOW)
    assert state.records["gp", "gp-1"].told_by is None  # version 2 was never in a notice
    (again,) = state.release(T0, POLICY, NOW)
    # The same resolver person, told nothing of version 2: a first notice, never the same id.
    assert again.person_id == first.person_id and again.version == 1
    assert again.notice_person_id != first.notice_person_id


@pytest.mark.parametrize("change", [
    {"documents": 3},  # a document count corrected
    {"person": {**AROHA, "email": "aroha.new@example.nz"}},  # a contact updated
    {"person": {**AROHA, "given_names": "Arohanui"}},  # a name corrected, the same NHI
    {"person": {k: v for k, v in AROHA.items() if k != "nhi"}, "nhi_dropped": True},
])
def test_a_new_version_of_the_only_told_record_about_the_same_person_sends_nothing(change):
    """An agency corrects something about a person it already told (a re-sent feed with a
    fixed row): they hold their notice's reference, so nothing new to say is nothing sent —
    never a second first notice under a new reference. Without an NHI on both versions the
    names and date of birth say who it is about: dropping the NHI is someone else's record
    as far as dedupe can tell (a first notice, as before)."""
    state = identity()
    state.apply_record(record("gp", "gp-1", AROHA))
    state.settle(T0)
    (first,) = state.release(T0, POLICY, NOW)
    state.apply_record(record("gp", "gp-1", change.get("person", AROHA), version=2,
                              documents=change.get("documents", 1)))
    state.settle(NOW)
    due = state.release(T0, POLICY, NOW)
    if change.get("nhi_dropped"):
        assert [(d.version, d.notice_person_id != first.notice_person_id) for d in due] == [
            (1, True)]
        return
    assert due == []
    assert state.records["gp", "gp-1"].told_by == first.notice_person_id
    person = state.persons[state.records["gp", "gp-1"].person_id]
    assert (person.status, person.notice_person_id) == ("notified", first.notice_person_id)


def test_a_new_version_of_a_told_record_that_adds_a_category_amends_the_same_notice():
    state = identity()
    state.apply_record(record("gp", "gp-1", AROHA))
    state.settle(T0)
    (first,) = state.release(T0, POLICY, NOW)
    state.apply_record(record("gp", "gp-1", AROHA, version=2,
                              categories=("clinical_notes", "prescriptions")))
    state.settle(NOW)
    (amendment,) = state.release(T0, POLICY, NOW)
    assert (amendment.notice_person_id, amendment.version) == (first.notice_person_id, 2)
    assert amendment.view.categories == frozenset({"clinical_notes", "prescriptions"})


def test_a_new_version_about_someone_else_is_their_own_first_notice():
    """The agency corrects whose record it is (another NHI and name): the notice went to the
    person it was about then, so the record's person now is told nothing — a first notice."""
    state = identity()
    state.apply_record(record("gp", "gp-1", AROHA))
    state.settle(T0)
    (first,) = state.release(T0, POLICY, NOW)
    state.apply_record(record("gp", "gp-1", HEMI, version=2))
    state.settle(NOW)
    assert state.records["gp", "gp-1"].told_by is None
    (again,) = state.release(T0, POLICY, NOW)
    assert again.version == 1 and again.notice_person_id != first.notice_person_id


def test_after_a_rebuild_a_new_version_of_a_told_record_still_sends_nothing():
    """Whom the told version was about is known again once a restart has opened the stored
    records (nothing of it is stored)."""
    state = identity()
    state.apply_record(record("gp", "gp-1", AROHA))
    state.settle(T0)
    (first,) = state.release(T0, POLICY, NOW)
    told = record("gp", "gp-1", AROHA)
    stored = StoredIdentity(
        records=[StoredRecord(key, RecordMeta(m.version, m.person_id, m.withdrawn, m.on_hold,
                                              m.categories, m.told_lineage, m.told_version),
                              told.sealed) for key, m in state.records.items()],
        persons={pid: dataclasses.replace(p) for pid, p in state.persons.items()},
        decisions=[], issued={first.notice_person_id: 1})
    rebuilt = IdentityState(SEALER).rebuild("inc-1", 0, stored)
    rebuilt.apply_record(record("gp", "gp-1", AROHA, version=2, documents=2))
    rebuilt.settle(NOW)
    assert rebuilt.release(T0, POLICY, NOW) == []
    assert rebuilt.records["gp", "gp-1"].told_by == first.notice_person_id


def _household_free_messages():
    """The resolver tests' household-free incident (independent people, no shared
    dwellings, some copies with another given name) as sealed record messages."""
    from tests.dedupe.resolver.test_households import household_free_incident

    records, truth = household_free_incident(5)
    messages = []
    for i, r in enumerate(records):
        person = {"given_names": r.given_names, "family_name": r.family_name,
                  "date_of_birth": r.date_of_birth.isoformat(),
                  "address": {"line1": r.address_line1, "postcode": r.postcode}}
        messages.append(record(r.agency_id, f"{r.source_record_id}-{i}", person))
    return messages, truth


def test_learning_at_release_lifts_the_guard_without_households_and_settles_the_moves():
    messages, truth = _household_free_messages()
    state = identity()
    for msg in messages:
        state.apply_record(msg)
    state.settle(T0)
    state.take_records()
    before = len({m.person_id for m in state.records.values()})
    state.learn(NOW)
    assert state.resolver.config.guard.given is False
    moved = state.take_records()
    assert moved  # records that joined their person are written in the same transaction
    after = {m.person_id for m in state.records.values()}
    assert len(after) < before
    assert len(after) == len(set(truth))  # every person whole, none mixed
    state.learn(NOW)  # once per incident
    assert state.take_records() == {}


def test_a_rebuilt_released_incident_learns_again_and_settles_what_differs_from_the_rows():
    messages, _ = _household_free_messages()
    state = identity()
    for msg in messages:
        state.apply_record(msg)
    state.settle(T0)
    stored_meta = {k: RecordMeta(m.version, m.person_id, m.withdrawn, m.on_hold, m.categories)
                   for k, m in state.records.items()}  # as stored before learning
    stored = StoredIdentity(
        records=[StoredRecord((m.agency_id, m.source_record_id),
                              stored_meta[m.agency_id, m.source_record_id], m.sealed)
                 for m in messages],
        persons={pid: PersonMeta(T0, T0, p.status, p.dirty) for pid, p in state.persons.items()},
        decisions=[])
    state.learn(NOW)
    registry = IdentityState(SEALER)
    rebuilt = registry.rebuild("inc-1", 0, stored, released=True)
    assert rebuilt.learned and rebuilt.resolver.config.guard.given is False
    rebuilt.settle(NOW)
    assert {k: m.person_id for k, m in rebuilt.records.items()} == {
        k: m.person_id for k, m in state.records.items()}
    assert rebuilt.take_records()  # the rows that differed are rewritten
