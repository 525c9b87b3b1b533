"""Dedupe's data access (store.py) on a real PostgreSQL database: what each function writes,
and that what the identity state is rebuilt from reads back as it was written."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from services.common.crypto import Sealer, generate_key_spec
from services.common.db import session_scope
from services.common.outbox import OutboxMessage
from services.dedupe import store
from services.dedupe.identity import PersonMeta, RecordMeta
from services.dedupe.models import NoticeState
from services.dedupe.notices import build_notice
from services.dedupe.release import PersonView
from services.dedupe.reviews import OpenReview, ReviewChanges
from testkit.messages import incident_message, record_message
from tests.dedupe.conftest import AROHA, HEMI

pytestmark = [pytest.mark.postgres]

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
SEALER = Sealer(generate_key_spec("store-test"))
GP, LAB = ("gp", "gp-1"), ("lab", "lab-9")


def run(engine, fn, *args):  # noqa: ANN001, ANN002, ANN201
    with session_scope(engine) as session:
        return fn(session, *args)


def test_an_incident_is_created_empty_then_defined_streamed_and_released(dedupe_engine):
    created = run(dedupe_engine, store.ensure_incident, "inc-1")
    assert created == store.Incident("inc-1")
    assert run(dedupe_engine, store.get_incident, "nope") is None

    definition = incident_message("inc-1", {"gp": "Test GP", "lab": "Test Lab"}, ["gp", "lab"],
                                  revision=2, hold_deadline=T0)
    run(dedupe_engine, store.save_definition, definition)
    incident = run(dedupe_engine, store.ensure_incident, "inc-1")
    assert incident.revision == 2
    assert incident.agency_names == {"gp": "Test GP", "lab": "Test Lab"}
    assert incident.expected_agency_ids == ["gp", "lab"]
    assert incident.release_policy["hold_deadline"] == "2026-11-28T09:00:00Z"

    incident.partition, incident.completed = 4, {"gp": 2}
    run(dedupe_engine, store.save_stream_state, incident)
    run(dedupe_engine, store.ensure_incident, "inc-2")  # no partition yet
    assert [i.incident_id for i in run(dedupe_engine, store.incidents_on, {4, 5})] == ["inc-1"]
    assert run(dedupe_engine, store.incidents_on, {0}) == []

    run(dedupe_engine, store.mark_released, "inc-1", T0, "complete")
    again = run(dedupe_engine, store.get_incident, "inc-1")
    assert (again.released_at, again.release_reason, again.completed) == (T0, "complete", {"gp": 2})
    assert again.revision == 2  # the stream state did not touch the definition


def test_a_manual_release_request_keeps_the_first_time(dedupe_engine):
    run(dedupe_engine, store.ensure_incident, "inc-1")
    first = run(dedupe_engine, store.request_manual_release, "inc-1", T0)
    later = run(dedupe_engine, store.request_manual_release, "inc-1", T0 + timedelta(hours=1))
    assert first.manual_release_requested_at == later.manual_release_requested_at == T0
    assert run(dedupe_engine, store.request_manual_release, "nope", T0) is None


def test_records_are_written_whole_moved_withdrawn_and_loaded_back(dedupe_engine):
    gp = record_message(SEALER, "inc-1", *GP, **AROHA)
    lab = record_message(SEALER, "inc-1", *LAB, version=3, categories=("lab_results",),
                         documents=4, **AROHA)
    other = record_message(SEALER, "inc-2", *GP, **HEMI)  # same key, another incident
    run(dedupe_engine, store.write_records, "inc-1", {
        GP: RecordMeta(1, "P-1", False, False, ("clinical_notes",)),
        LAB: RecordMeta(3, "P-2", False, False, ("lab_results",)),
    }, {GP: gp, LAB: lab}, T0)
    run(dedupe_engine, store.write_records, "inc-2",
        {GP: RecordMeta(1, "P-9", False, False, ("clinical_notes",))}, {GP: other}, T0)

    # A merge moves the lab record to P-1; no new version, so only its person changes.
    run(dedupe_engine, store.write_records, "inc-1",
        {LAB: RecordMeta(3, "P-1", False, False, ("lab_results",))}, {}, T0 + timedelta(hours=1))
    stored = run(dedupe_engine, store.load_identity, "inc-1")
    by_key = {r.key: r for r in stored.records}
    assert set(by_key) == {GP, LAB}
    assert by_key[LAB].meta == RecordMeta(3, "P-1", False, False, ("lab_results",))
    assert by_key[LAB].sealed == lab.sealed
    assert by_key[GP].meta == RecordMeta(1, "P-1", False, False, ("clinical_notes",))

    live = run(dedupe_engine, store.live_records, "inc-1", ["P-1"])
    assert sorted((r.agency_id, r.document_count, r.data_categories, r.updated_at)
                  for r in live["P-1"]) == [("gp", 1, ["clinical_notes"], T0),
                                            ("lab", 4, ["lab_results"], T0)]

    run(dedupe_engine, store.write_records, "inc-1",
        {GP: RecordMeta(1, None, True, False, ("clinical_notes",))}, {}, T0)
    assert [r.agency_id for r in run(dedupe_engine, store.live_records, "inc-1", ["P-1"])["P-1"]] \
        == ["lab"]
    assert run(dedupe_engine, store.load_identity, "inc-2").records[0].meta.person_id == "P-9"


def test_persons_are_upserted_and_loaded_back(dedupe_engine):
    pending = PersonMeta(T0, T0)
    notified = PersonMeta(T0, T0, status="notified", dirty=False, notice_person_id="P-0",
                          notified_version=2, notified_agency_ids=frozenset({"lab", "gp"}),
                          notified_categories=frozenset({"lab_results"}))
    run(dedupe_engine, store.write_persons, "inc-1", {"P-1": pending, "P-2": notified})
    later = T0 + timedelta(minutes=5)
    run(dedupe_engine, store.write_persons, "inc-1",
        {"P-1": PersonMeta(T0, later, status="held", dirty=False)})
    persons = run(dedupe_engine, store.load_identity, "inc-1").persons
    assert persons == {"P-1": PersonMeta(T0, later, status="held", dirty=False), "P-2": notified}


def test_a_notice_and_the_outbox_row_publishing_it_are_written_together(dedupe_engine):
    gp = record_message(SEALER, "inc-1", *GP, **AROHA)
    run(dedupe_engine, store.write_records, "inc-1",
        {GP: RecordMeta(1, "P-1", False, False, ("clinical_notes",))}, {GP: gp}, T0)
    records = run(dedupe_engine, store.live_records, "inc-1", ["P-1"])["P-1"]
    notice = build_notice(SEALER, "inc-1", "P-0", 2, records, {"gp": "Test GP"}, T0)
    view = PersonView(1, False, frozenset({"gp"}), frozenset({"clinical_notes"}), T0, T0, 1,
                      frozenset(), frozenset())
    run(dedupe_engine, store.add_notices, [(notice, view)], T0)

    def read(session):  # noqa: ANN001, ANN202
        return (session.exec(select(NoticeState)).one(), session.exec(select(OutboxMessage)).one())

    row, out = run(dedupe_engine, read)
    assert (row.notice_id, row.person_id, row.version, row.agency_ids, row.data_categories) == (
        notice.notice_id, "P-0", 2, ["gp"], ["clinical_notes"])
    assert (out.topic, out.key, out.payload) == ("notices.v1", "P-0", notice.to_bytes())


def _open(review_id: str, a, b, reason: str = "uncertain") -> OpenReview:  # noqa: ANN001
    return OpenReview(review_id, a, b, reason, {"weight": 4.5, "comparisons": []})


def test_review_rows_from_queue_changes_to_decisions_applied(dedupe_engine):
    hosp = ("hosp", "h-1")
    run(dedupe_engine, store.write_review_changes, "inc-1", ReviewChanges(
        new=[_open("rev-1", GP, LAB), _open("rev-2", GP, hosp)]), T0)
    assert run(dedupe_engine, store.review_statuses, "inc-1") == {
        "rev-1": ("open", "uncertain"), "rev-2": ("open", "uncertain")}
    (first, _) = run(dedupe_engine, store.reviews, "inc-1", "open")
    assert first == store.Review("rev-1", GP, LAB, "uncertain", "open",
                                 {"weight": 4.5, "comparisons": []}, None)

    decided = run(dedupe_engine, store.decide_review, "inc-1", "rev-1", "merge", T0)
    assert (decided.status, decided.decided_at, decided.a) == ("merge", T0, GP)
    assert run(dedupe_engine, store.decide_review, "inc-2", "rev-1", "keep_apart", T0) is None
    assert run(dedupe_engine, store.decide_review, "inc-1", "rev-9", "keep_apart", T0) is None
    (pending,) = run(dedupe_engine, store.pending_decisions, "inc-1")
    assert (pending.review_id, pending.a, pending.b, pending.same_person) == ("rev-1", GP, LAB, True)

    # The queue never rewrites a decision, and resolves only open pairs.
    run(dedupe_engine, store.write_review_changes, "inc-1", ReviewChanges(
        revised=[_open("rev-1", GP, LAB, "guard"), _open("rev-2", GP, hosp, "guard")],
        resolved=["rev-1"]), T0)
    assert run(dedupe_engine, store.review_statuses, "inc-1") == {
        "rev-1": ("merge", "uncertain"), "rev-2": ("open", "guard")}
    run(dedupe_engine, store.write_review_changes, "inc-1", ReviewChanges(resolved=["rev-2"]), T0)
    assert [r.review_id for r in run(dedupe_engine, store.reviews, "inc-1", "resolved")] == ["rev-2"]
    assert [r.review_id for r in run(dedupe_engine, store.reviews, "inc-1", None)] == ["rev-1",
                                                                                      "rev-2"]

    assert run(dedupe_engine, store.load_identity, "inc-1").decisions == []  # not yet applied
    run(dedupe_engine, store.mark_applied, [pending])
    assert run(dedupe_engine, store.pending_decisions, "inc-1") == []
    (kept,) = run(dedupe_engine, store.load_identity, "inc-1").decisions
    assert (kept.a, kept.b, kept.same_person) == (GP, LAB, True)


def test_progress_counts_records_persons_and_open_reviews(dedupe_engine):
    assert run(dedupe_engine, store.progress, "inc-1") is None
    run(dedupe_engine, store.ensure_incident, "inc-1")
    run(dedupe_engine, store.save_definition,
        incident_message("inc-1", {"gp": "Test GP", "lab": "Test Lab", "hosp": "Test Hospital"},
                         ["gp", "lab"], hold_deadline=T0))
    incident = run(dedupe_engine, store.get_incident, "inc-1")
    incident.completed = {"gp": 2}
    run(dedupe_engine, store.save_stream_state, incident)
    run(dedupe_engine, store.save_missing, "inc-1", {"lab": 2})
    messages = {key: record_message(SEALER, "inc-1", *key, **AROHA)
                for key in (GP, ("gp", "gp-2"), LAB)}
    run(dedupe_engine, store.write_records, "inc-1", {
        GP: RecordMeta(1, "P-1", False, False, ()), ("gp", "gp-2"): RecordMeta(1, None, True, False, ()),
        LAB: RecordMeta(1, "P-1", False, False, ())}, messages, T0)
    run(dedupe_engine, store.write_persons, "inc-1", {
        "P-1": PersonMeta(T0, T0, status="notified"), "P-2": PersonMeta(T0, T0, status="empty"),
        "P-3": PersonMeta(T0, T0, status="held"), "P-4": PersonMeta(T0, T0)})
    run(dedupe_engine, store.write_review_changes, "inc-1",
        ReviewChanges(new=[_open("rev-1", GP, LAB), _open("rev-2", GP, ("hosp", "h"))]), T0)
    run(dedupe_engine, store.decide_review, "inc-1", "rev-2", "keep_apart", T0)

    progress = run(dedupe_engine, store.progress, "inc-1")
    assert progress == store.IncidentProgress(
        incident_id="inc-1", released_at=None, release_reason=None,
        hold_deadline="2026-11-28T09:00:00Z",
        agencies=[
            store.AgencyCount("gp", "Test GP", True, True, records=1, withdrawn=1, missing=0),
            store.AgencyCount("hosp", "Test Hospital", False, False, records=0, withdrawn=0,
                              missing=0),
            store.AgencyCount("lab", "Test Lab", True, False, records=1, withdrawn=0, missing=2),
        ],
        records_missing=2, persons=3, pending_release=1, notified=1, on_hold=1, in_review=1,
        held_for_contact=0, contact_conflicts=0, hold_conflicts=0, retractions=0)


def test_a_decision_changed_while_the_owner_applies_the_old_one_stays_pending(dedupe_engine):
    run(dedupe_engine, store.write_review_changes, "inc-1",
        ReviewChanges(new=[_open("rev-1", GP, LAB)]), T0)
    run(dedupe_engine, store.decide_review, "inc-1", "rev-1", "merge", T0)
    with session_scope(dedupe_engine) as tick:  # the owner's tick applies "merge"…
        (seen,) = store.pending_decisions(tick, "inc-1")
        # …while the coordinator changes their mind, in a transaction of their own.
        run(dedupe_engine, store.decide_review, "inc-1", "rev-1", "keep_apart", T0 + timedelta(minutes=1))
        store.mark_applied(tick, [seen])
    (pending,) = run(dedupe_engine, store.pending_decisions, "inc-1")
    assert pending.same_person is False  # the next tick applies "keep apart"


def test_a_told_version_moved_on_by_a_hold_is_written_with_the_new_version(dedupe_engine):
    """identity.apply_record keeps a told record told when its new version carries a hold;
    a rebuild must read that back, or the person looks never told again after a restart."""
    first = record_message(SEALER, "inc-1", *LAB, **AROHA)
    run(dedupe_engine, store.write_records, "inc-1",
        {LAB: RecordMeta(1, "P-1", False, False, ("lab_results",))}, {LAB: first}, T0)
    held = record_message(SEALER, "inc-1", *LAB, version=2, hold={"reason": "health_prejudice"},
                          **AROHA)
    run(dedupe_engine, store.write_records, "inc-1",
        {LAB: RecordMeta(2, "P-1", False, True, ("lab_results",), told_version=2)},
        {LAB: held}, T0)
    (stored,) = run(dedupe_engine, store.load_identity, "inc-1").records
    assert (stored.meta.version, stored.meta.told_version) == (2, 2)
