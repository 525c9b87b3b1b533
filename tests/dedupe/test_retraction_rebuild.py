"""Retractions (issue 16) in the pipeline on a real PostgreSQL database, without Kafka: a
correction decision is carried out once, also across a restart (a new pipeline rebuilding the
incident from the database) and replays of the withdrawal; the lineage's versions go on from
the correction; and an agency named wrongly that later sends a real record amends the person."""

import pytest
from sqlmodel import Session, select

from services.common.clock import utcnow
from services.common.crypto import Sealer, generate_key_spec
from services.common.db import session_scope
from services.common.messages import decode_notice
from services.common.outbox import OutboxMessage
from services.dedupe import store
from services.dedupe.models import NoticeState
from services.dedupe.pipeline import DedupePipeline
from testkit.messages import completion, incident_message, record_message, withdrawal
from tests.dedupe.conftest import AROHA

pytestmark = [pytest.mark.postgres]

SEALER = Sealer(generate_key_spec("retraction-test"))
AGENCIES = {"gp": "Test GP", "lab": "Test Lab"}


def notices(engine) -> list:  # noqa: ANN001
    with Session(engine) as session:
        return [decode_notice(row.payload) for row in session.exec(
            select(OutboxMessage).order_by(OutboxMessage.id)).all()]


def retractions(engine, incident_id: str) -> list:  # noqa: ANN001
    with session_scope(engine) as session:
        return [r for r in store.reviews(session, incident_id, None) if r.kind == "retraction"]


def test_a_correction_is_made_once_across_a_rebuild_and_versions_go_on(dedupe_engine):
    pipeline = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    pipeline.apply_incidents([incident_message("inc-r", AGENCIES, ["gp", "lab"])])
    assert pipeline.apply_batch(0, [
        record_message(SEALER, "inc-r", "gp", "gp-1", **AROHA),
        record_message(SEALER, "inc-r", "lab", "lab-1", categories=("lab_results",), **AROHA),
        completion("inc-r", "gp", 1), completion("inc-r", "lab", 1)]) == 1
    assert retractions(dedupe_engine, "inc-r") == []
    pipeline.apply_batch(0, [withdrawal("inc-r", "lab", "lab-1")])
    pipeline.tick({0})
    (item,) = retractions(dedupe_engine, "inc-r")
    assert (item.reason, item.status, item.evidence["standing_agencies"]) == (
        "agency_withdrawn", "open", ["gp"])
    with session_scope(dedupe_engine) as session:
        store.decide_review(session, "inc-r", item.review_id, "send_correction", utcnow())
    pipeline.tick({0})
    first, correction = notices(dedupe_engine)
    assert (correction.person_id, correction.version) == (first.person_id, 2)
    assert correction.correction.kind == "agency_not_involved"

    # A restart: a new pipeline rebuilds the incident; replays change nothing.
    restarted = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    restarted.apply_batch(0, [withdrawal("inc-r", "lab", "lab-1"),
                              record_message(SEALER, "inc-r", "gp", "gp-1", **AROHA)])
    restarted.tick({0})
    restarted.tick({0})
    assert len(notices(dedupe_engine)) == 2
    (again,) = retractions(dedupe_engine, "inc-r")
    assert (again.review_id, again.status, again.correction_notice_id) == (
        item.review_id, "send_correction", correction.notice_id)

    # The lab then sends a real record of hers: told it was not involved, she is told again
    # (an amendment naming the lab), at the version after the correction.
    restarted.apply_batch(0, [record_message(SEALER, "inc-r", "lab", "lab-2",
                                             categories=("lab_results",), **AROHA)])
    restarted.tick({0})
    *_, amendment = notices(dedupe_engine)
    assert (amendment.person_id, amendment.version, amendment.correction) == (
        first.person_id, 3, None)
    assert [a.agency_id for a in amendment.agencies] == ["gp", "lab"]
    with Session(dedupe_engine) as session:
        kinds = sorted((n.version, n.correction) for n in session.exec(select(NoticeState)).all())
    assert kinds == [(1, None), (2, "agency_not_involved"), (3, None)]
