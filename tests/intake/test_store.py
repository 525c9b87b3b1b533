"""Intake's store on the real PostgreSQL: each function in its own transaction, as routes and
orchestration call it through `Database.run`."""

from datetime import timedelta

import psycopg
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session as OrmSession

from services.common.clock import utcnow
from services.common.db import session_scope
from services.common.outbox import OutboxMessage
from services.common.topics import AFFECTED_RECORDS
from services.intake import store
from services.intake.models import AffectedRecord
from services.intake.validation import Problem
from testkit.factories import INCIDENT_CONTENT

pytestmark = pytest.mark.postgres


@pytest.fixture
def tx(intake_engine):  # noqa: ANN001, ANN201
    """tx(fn, *args): fn(session, *args) in one committed transaction."""
    def run(fn, *args, **kwargs):  # noqa: ANN001, ANN202
        with session_scope(intake_engine) as session:
            return fn(session, *args, **kwargs)

    return run


def _incident(tx, incident_id: str = "inc-1"):  # noqa: ANN001, ANN202
    return tx(store.add_incident, incident_id, "Test portal breach", INCIDENT_CONTENT, {}, {})


def _enrolled(tx, incident_id: str, *agencies: str) -> None:  # noqa: ANN001
    for agency_id in agencies:
        tx(store.save_agency, agency_id, f"Agency {agency_id}")
        tx(store.save_enrolment, incident_id, agency_id, True)


def _problem(line: int, code: str = "record.no_name", srid: str | None = "r", field: str | None = None) -> Problem:
    return Problem("error", line, srid, field, code, "message")


def _version(srid: str, version: int, fingerprint: str = "fp", feed_id: str = "feed-1",
             agency_id: str = "ag-1") -> store.RecordVersion:
    return store.RecordVersion("inc-1", agency_id, srid, version, fingerprint, "sealed", feed_id, utcnow())


# --- incidents, agencies and enrolment ----------------------------------------------------------


def test_an_incident_is_added_once_and_its_revision_bumps(tx):
    incident = _incident(tx)
    assert (incident.incident_id, incident.revision, incident.content) == ("inc-1", 1, INCIDENT_CONTENT)
    assert _incident(tx) is None  # the id exists: nothing added
    assert tx(store.get_incident, "inc-2") is None

    def bump(session):  # noqa: ANN001, ANN202
        row = store.get_incident(session, "inc-1")
        before = row.updated_at
        store.bump_revision(session, row)
        return before

    before = tx(bump)
    after = tx(store.get_incident, "inc-1")
    assert after.revision == 2 and after.updated_at >= before


def test_agencies_are_created_or_renamed_and_listed_by_id(tx):
    _incident(tx)
    assert not tx(store.agency_exists, "lab-b")
    tx(store.save_agency, "lab-b", "Lab B")
    tx(store.save_agency, "gp-a", "GP A")
    tx(store.save_agency, "lab-b", "Lab B (renamed)")
    assert tx(store.agency_exists, "lab-b")
    tx(store.save_enrolment, "inc-1", "lab-b", True)
    tx(store.save_enrolment, "inc-1", "gp-a", True)
    tx(store.save_enrolment, "inc-1", "gp-a", False)  # re-enrolled: no longer expected
    assert tx(store.enrolled_agencies, "inc-1") == [
        store.EnrolledAgency("gp-a", "GP A", False, None),
        store.EnrolledAgency("lab-b", "Lab B (renamed)", True, None),
    ]
    assert tx(store.enrolled_agencies, "no-such-incident") == []


def test_completion_records_the_count_and_the_time(tx):
    _incident(tx)
    _enrolled(tx, "inc-1", "ag-1")
    before = utcnow()
    enrolment = tx(store.record_completion, "inc-1", "ag-1", 7)
    assert enrolment.completed_record_count == 7 and enrolment.completed_at >= before
    [listed] = tx(store.enrolled_agencies, "inc-1")
    assert listed.completed_at == enrolment.completed_at
    with pytest.raises(LookupError):
        tx(store.record_completion, "inc-1", "not-enrolled", 1)


def test_agency_access(tx):
    for incident_id in ("inc-1", "inc-2"):
        _incident(tx, incident_id)
    _enrolled(tx, "inc-1", "ag-1", "ag-2")
    _enrolled(tx, "inc-2", "ag-1")
    tx(store.add_feed, "feed-1", "inc-1", "ag-1", None, "ndjson")
    tx(store.add_feed, "feed-2", "inc-2", "ag-1", None, "ndjson")

    access = store.Access
    assert tx(store.agency_access, "nope", "ag-1") is access.NO_INCIDENT
    assert tx(store.agency_access, "inc-2", "ag-2") is access.NO_INCIDENT  # exists, not enrolled
    assert tx(store.agency_access, "inc-1", "ag-1") is access.OK
    assert tx(store.agency_access, "inc-1", "ag-1", "feed-1") is access.OK
    assert tx(store.agency_access, "inc-1", "ag-2", "feed-1") is access.NO_FEED  # another agency's
    assert tx(store.agency_access, "inc-1", "ag-1", "feed-2") is access.NO_FEED  # another incident's
    assert tx(store.agency_access, "inc-1", "ag-1", "feed-x") is access.NO_FEED
    assert tx(store.agency_access, "inc-2", "ag-2", "feed-2") is access.NO_INCIDENT  # enrolment first


# --- API keys -----------------------------------------------------------------------------------


def test_api_keys_are_added_found_and_revoked_by_their_agency_only(tx):
    tx(store.save_agency, "ag-1", "Agency 1")
    tx(store.save_agency, "ag-2", "Agency 2")
    tx(store.add_api_key, "ag-1", "k1", "0" * 64)
    key = tx(store.get_api_key, "k1")
    assert (key.agency_id, key.secret_sha256, key.revoked_at) == ("ag-1", "0" * 64, None)
    assert tx(store.get_api_key, "k2") is None

    assert not tx(store.revoke_api_key, "ag-2", "k1")  # not ag-2's key
    assert tx(store.get_api_key, "k1").revoked_at is None
    assert not tx(store.revoke_api_key, "ag-1", "k2")
    assert tx(store.revoke_api_key, "ag-1", "k1")
    revoked_at = tx(store.get_api_key, "k1").revoked_at
    assert revoked_at is not None
    assert tx(store.revoke_api_key, "ag-1", "k1")  # again: still revoked, first time kept
    assert tx(store.get_api_key, "k1").revoked_at == revoked_at


# --- feeds and their problems -------------------------------------------------------------------


def test_an_idempotency_key_belongs_to_one_feed_per_agency(tx, intake_engine):
    feed = tx(store.add_feed, "feed-1", "inc-1", "ag-1", "key-1", "csv")
    assert (feed.feed_id, feed.format, feed.received, feed.accepted) == ("feed-1", "csv", 0, 0)
    with pytest.raises(store.IdempotencyKeyTaken):
        tx(store.add_feed, "feed-2", "inc-1", "ag-1", "key-1", "csv")
    tx(store.add_feed, "feed-3", "inc-2", "ag-2", "key-1", "csv")  # another agency's key space
    tx(store.add_feed, "feed-4", "inc-1", "ag-1", None, "csv")
    tx(store.add_feed, "feed-5", "inc-1", "ag-1", None, "csv")  # no key: never a conflict
    assert tx(store.feed_by_idempotency_key, "ag-1", "key-1").feed_id == "feed-1"
    assert tx(store.feed_by_idempotency_key, "ag-2", "key-1").feed_id == "feed-3"
    assert tx(store.feed_by_idempotency_key, "ag-1", "key-2") is None
    assert tx(store.get_feed, "feed-2") is None


def test_a_duplicate_feed_id_is_not_mistaken_for_an_idempotency_key(tx):
    tx(store.add_feed, "feed-1", "inc-1", "ag-1", None, "csv")
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the IntegrityError itself
        tx(store.add_feed, "feed-1", "inc-1", "ag-1", None, "csv")
    assert not isinstance(caught.value, store.IdempotencyKeyTaken)


def test_feed_counts(tx):
    def count(session):  # noqa: ANN001, ANN202
        feed = store.add_feed(session, "feed-1", "inc-1", "ag-1", None, "json")
        store.set_feed_counts(session, feed, received=5, accepted=2, unchanged=1, rejected=2, warnings=3)

    tx(count)
    feed = tx(store.get_feed, "feed-1")
    assert (feed.received, feed.accepted, feed.unchanged, feed.rejected, feed.warnings) == (5, 2, 1, 2, 3)


def test_problems_are_stored_fitting_their_columns(tx, intake_engine):
    tx(store.add_feed, "feed-1", "inc-1", "ag-1", None, "ndjson")
    problems = [
        _problem(1),
        _problem(2, "field.unknown", field="bad\x00key\ud800" + "x" * 100),
        _problem(3, srid="s" * 200),
    ]
    stored = tx(store.add_problems, "feed-1", problems)
    assert stored[0] is problems[0]  # nothing to fix: the same problem
    assert stored[1].field == ("bad?key?" + "x" * 100)[:64]
    assert stored[2].source_record_id == "s" * 128
    assert tx(store.first_problems, "feed-1", 10) == stored
    assert tx(store.first_problems, "feed-1", 2) == stored[:2]
    assert tx(store.first_problems, "feed-2", 10) == []
    assert tx(store.add_problems, "feed-1", []) == []


def test_problem_pages_go_by_line_and_never_split_one(tx):
    tx(store.add_feed, "feed-1", "inc-1", "ag-1", None, "ndjson")
    lines = [1, 2, 2, 2, 3, 4]
    tx(store.add_problems, "feed-1", [_problem(line, code=f"code.{i}") for i, line in enumerate(lines)])

    def pages(limit: int) -> list[list[int]]:
        out, after = [], 0
        while True:
            page = tx(store.problems_page, "feed-1", after, limit)
            out.append([p.line for p in page.problems])
            if page.next_after_line is None:
                return out
            assert page.next_after_line == page.problems[-1].line
            after = page.next_after_line

    # A full page ends before its last line, which may go on past the page; a line with more
    # problems than the limit comes whole, on a page of its own.
    assert pages(1) == [[1], [2, 2, 2], [3], [4]]
    assert pages(2) == [[1], [2, 2, 2], [3, 4]]
    assert pages(3) == [[1], [2, 2, 2], [3, 4]]
    assert pages(4) == [[1], [2, 2, 2], [3, 4]]
    assert pages(5) == [[1, 2, 2, 2], [3, 4]]
    assert pages(10) == [lines]
    codes = [p.code for p in tx(store.problems_page, "feed-1", 0, 10).problems]
    assert codes == [f"code.{i}" for i in range(6)]  # within a line, in the order found
    assert tx(store.problems_page, "feed-1", 4, 10) == store.ProblemsPage([], None)


# --- affected records and their versions --------------------------------------------------------


def test_latest_versions_and_withdrawal(tx, intake_engine):
    tx(store.add_record_versions, [_version("r1", 1, "a"), _version("r1", 2, "b"), _version("r2", 1, "c"),
                                   _version("r3", 1, "d", agency_id="ag-2")])
    latest = tx(store.latest_versions, "inc-1", "ag-1", ["r1", "r2", "r3", "r4"])
    assert latest == {"r1": store.LatestVersion(2, "b", False), "r2": store.LatestVersion(1, "c", False)}
    assert tx(store.live_record_count, "inc-1", "ag-1") == 2
    assert tx(store.live_record_count, "inc-1", "ag-2") == 1

    at = utcnow()
    tx(store.withdraw_record, "inc-1", "ag-1", "r1", at)
    tx(store.withdraw_record, "inc-1", "ag-1", "r1", at + timedelta(hours=1))  # keeps the first time
    assert tx(store.latest_versions, "inc-1", "ag-1", ["r1"]) == {"r1": store.LatestVersion(2, "b", True)}
    assert tx(store.live_record_count, "inc-1", "ag-1") == 1
    assert tx(store.withdrawn_record_count, "inc-1", "ag-1") == 1
    assert tx(store.withdrawn_record_count, "inc-1", "ag-2") == 0
    with OrmSession(intake_engine) as session:
        rows = session.query(AffectedRecord.version, AffectedRecord.withdrawn_at).filter_by(
            source_record_id="r1").order_by(AffectedRecord.version).all()
        assert rows == [(1, at), (2, at)]
        assert session.query(AffectedRecord).filter_by(source_record_id="r2").one().withdrawn_at is None


def test_record_versions_are_never_stored_twice(tx):
    tx(store.add_record_versions, [_version("r1", 1)])
    with pytest.raises(psycopg.errors.UniqueViolation):
        tx(store.add_record_versions, [_version("r1", 1, feed_id="feed-2")])
    assert tx(store.add_record_versions, []) is None  # nothing to write


def test_lock_agency_records_serialises_one_agency_in_one_incident(intake_engine):
    with session_scope(intake_engine) as holder:
        store.lock_agency_records(holder, "inc-1", "ag-1")
        with session_scope(intake_engine) as other:
            other.connection().exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
            store.lock_agency_records(other, "inc-1", "ag-2")  # another agency: not blocked
            store.lock_agency_records(other, "inc-2", "ag-1")  # another incident: not blocked
        with pytest.raises(OperationalError, match="lock timeout"), session_scope(intake_engine) as other:
            other.connection().exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
            store.lock_agency_records(other, "inc-1", "ag-1")
    with session_scope(intake_engine) as after:  # released with the holder's transaction
        after.connection().exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
        store.lock_agency_records(after, "inc-1", "ag-1")


# --- the outbox ---------------------------------------------------------------------------------


def test_outbox_rows_are_enqueued_in_order(tx, intake_engine):
    now = utcnow()
    tx(store.enqueue, AFFECTED_RECORDS, "inc-1", b"first")
    tx(store.enqueue_many, [store.OutboxRow(AFFECTED_RECORDS.name, "inc-1", b"second", now),
                            store.OutboxRow(AFFECTED_RECORDS.name, "inc-2", b"third", now)])
    tx(store.enqueue_many, [])
    with OrmSession(intake_engine) as session:
        rows = session.query(OutboxMessage.topic, OutboxMessage.key, OutboxMessage.payload).order_by(
            OutboxMessage.id).all()
    assert rows == [(AFFECTED_RECORDS.name, "inc-1", b"first"), (AFFECTED_RECORDS.name, "inc-1", b"second"),
                    (AFFECTED_RECORDS.name, "inc-2", b"third")]
