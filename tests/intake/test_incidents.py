"""The coordinator's side without HTTP or Kafka: every change to an incident enqueues its full
state for the incidents topic; completion announces the live record count (real PostgreSQL)."""

import pytest
from sqlmodel import Session, select

from services.common.clock import utcnow
from services.common.db import session_scope
from services.common.messages import ContributionCompleteMessage, IncidentMessage
from services.common.outbox import OutboxMessage
from services.common.topics import AFFECTED_RECORDS, INCIDENTS
from services.intake import incidents, store
from services.intake.schemas import IncidentCreate
from testkit.factories import incident_body

pytestmark = pytest.mark.postgres


def _run(engine, fn, *args):  # noqa: ANN001, ANN202
    with session_scope(engine) as session:
        return fn(session, *args)


def _published(engine, topic=INCIDENTS) -> list[bytes]:  # noqa: ANN001
    with Session(engine) as session:
        return [r.payload for r in session.exec(
            select(OutboxMessage).where(OutboxMessage.topic == topic.name).order_by(OutboxMessage.id))]


def _setup(incident_id: str = "inc-1", agencies=(("lab-b", "Lab B"), ("gp-a", "GP A"))) -> IncidentCreate:  # noqa: ANN001
    return IncidentCreate.model_validate(incident_body(incident_id, list(agencies)))


def test_creating_an_incident_enrols_its_agencies_and_issues_each_a_key(intake_engine):
    created = _run(intake_engine, incidents.create_incident, _setup())
    assert created.incident.revision == 3  # created, then one revision per enrolment
    assert [a.agency_id for a in created.agencies] == ["gp-a", "lab-b"]
    assert [k.agency_id for k in created.issued_keys] == ["lab-b", "gp-a"]
    assert all(_run(intake_engine, store.get_api_key, k.key_id).secret_sha256 == k.secret_sha256
               for k in created.issued_keys)
    states = [IncidentMessage.model_validate_json(p) for p in _published(intake_engine)]
    assert [(m.revision, m.expected_agency_ids) for m in states] == [
        (1, []), (2, ["lab-b"]), (3, ["gp-a", "lab-b"])]
    assert states[-1].content.contact.web_address == "breach.example.nz"
    assert _run(intake_engine, incidents.create_incident, _setup()) is None  # exists: nothing changes
    assert len(_published(intake_engine)) == 3


def test_enrolment_renames_and_reissues_and_snapshot_shows_it(intake_engine):
    _run(intake_engine, incidents.create_incident, _setup(agencies=[("gp-a", "GP A")]))
    key = _run(intake_engine, incidents.enrol_agency, "inc-1", "gp-a", "GP A (renamed)", False)
    assert key.agency_id == "gp-a"
    found = _run(intake_engine, incidents.snapshot, "inc-1")
    assert found.incident.revision == 3 and found.issued_keys == []
    assert found.agencies == [store.EnrolledAgency("gp-a", "GP A (renamed)", False, None)]
    latest = IncidentMessage.model_validate_json(_published(intake_engine)[-1])
    assert latest.expected_agency_ids == [] and latest.agencies[0].name == "GP A (renamed)"

    assert _run(intake_engine, incidents.enrol_agency, "nope", "gp-a", "GP A", True) is None
    assert _run(intake_engine, incidents.snapshot, "nope") is None
    assert _run(intake_engine, incidents.issue_key, "no-such-agency") is None
    another = _run(intake_engine, incidents.issue_key, "gp-a")
    assert another.key_id != key.key_id


def test_completion_counts_live_records_and_is_announced_each_time(intake_engine):
    _run(intake_engine, incidents.create_incident, _setup(agencies=[("gp-a", "GP A")]))
    now = utcnow()
    _run(intake_engine, store.add_record_versions, [
        store.RecordVersion("inc-1", "gp-a", srid, version, "fp", "sealed", "feed-1", now)
        for srid, version in (("r1", 1), ("r1", 2), ("r2", 1), ("r3", 1))])
    _run(intake_engine, store.withdraw_record, "inc-1", "gp-a", "r3", now)
    first = _run(intake_engine, incidents.mark_complete, "inc-1", "gp-a")
    assert first.completed_record_count == 2
    _run(intake_engine, store.withdraw_record, "inc-1", "gp-a", "r2", now)
    again = _run(intake_engine, incidents.mark_complete, "inc-1", "gp-a")
    assert again.completed_record_count == 1 and again.completed_at >= first.completed_at
    announced = [ContributionCompleteMessage.model_validate_json(p)
                 for p in _published(intake_engine, AFFECTED_RECORDS)]
    assert [(m.agency_id, m.record_count) for m in announced] == [("gp-a", 2), ("gp-a", 1)]
