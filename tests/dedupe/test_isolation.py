"""Per-incident isolation (issue 10): one incident's failure — in its release during a batch,
or in its tick — never stops another incident's release. The failing incident is retried
with backoff and surfaced (a metric; a log line naming the incident and the error's type,
no values), and released once the cause is gone. The pipeline on a real PostgreSQL."""

import logging
import re

import pytest
from prometheus_client import REGISTRY
from sqlmodel import Session, func, select

from services.common.crypto import Sealer, generate_key_spec
from services.common.db import session_scope
from services.common.ids import notice_id
from services.dedupe import store
from services.dedupe.failures import IncidentFailures
from services.dedupe.identity import RecordMeta
from services.dedupe.models import NoticeState, RecordState
from services.dedupe.pipeline import DedupePipeline
from services.dedupe.resolver.explain import person_id_for
from testkit.messages import completion, incident_message, record_message
from tests.dedupe.conftest import AROHA, HEMI

pytestmark = [pytest.mark.postgres]

SEALER = Sealer(generate_key_spec("isolation-test"))
OTHER_KEY = Sealer(generate_key_spec("another-keyring"))
AGENCIES = {"gp": "Test GP"}


def notices(engine, incident_id: str) -> int:  # noqa: ANN001
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(NoticeState).where(
            NoticeState.incident_id == incident_id)).one()


def failures(stage: str) -> float:
    return REGISTRY.get_sample_value("panui_dedupe_incident_failures_total",
                                     {"stage": stage}) or 0.0


class Monotonic:
    """The retry schedule's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_out(pipeline: DedupePipeline, incident_id: str) -> None:
    pipeline.failures.clock.now = pipeline.failures.failing()[incident_id].retry_at


@pytest.fixture
def pipeline(dedupe_engine) -> DedupePipeline:  # noqa: ANN001
    pipeline = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    pipeline.failures = IncidentFailures(first_delay_s=1.0, clock=Monotonic())
    for incident_id in ("inc-a", "inc-b"):
        pipeline.apply_incidents([incident_message(incident_id, AGENCIES, ["gp"])])
    return pipeline


def test_a_release_failing_in_a_batch_stops_neither_the_batch_nor_other_releases(
        pipeline, dedupe_engine, caplog):
    # A row in the way of inc-b's first notice: its release fails (IntegrityError).
    stray = notice_id("inc-b", person_id_for([("gp", "gp-1")]), 1)
    with session_scope(dedupe_engine) as session:
        session.add(NoticeState(notice_id=stray, incident_id="other", person_id="x", version=1,
                                agency_ids=[], data_categories=[]))
    before = failures("release")
    with caplog.at_level(logging.WARNING, logger="services.dedupe.pipeline"):
        released = pipeline.apply_batch(0, [
            record_message(SEALER, "inc-b", "gp", "gp-1", **HEMI), completion("inc-b", "gp", 1),
            record_message(SEALER, "inc-a", "gp", "gp-1", **AROHA), completion("inc-a", "gp", 1)])
    assert released == 1 and notices(dedupe_engine, "inc-a") == 1
    assert failures("release") == before + 1
    (line,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (line.incident_id, line.error) == ("inc-b", "IntegrityError")
    assert "Hemi" not in caplog.text and stray not in caplog.text
    # inc-b's records were applied with the batch; only its release waits.
    with Session(dedupe_engine) as session:
        assert session.exec(select(func.count()).select_from(RecordState)).one() == 2
    assert pipeline.failures.waiting("inc-b") and pipeline.tick({0}) == 0

    with session_scope(dedupe_engine) as session:  # the cause is dealt with
        session.execute(NoticeState.__table__.delete().where(NoticeState.notice_id == stray))
    wait_out(pipeline, "inc-b")
    assert pipeline.tick({0}) == 1 and notices(dedupe_engine, "inc-b") == 1
    assert pipeline.failures.failing() == {}


def test_an_incident_whose_tick_fails_is_retried_with_backoff_while_others_release(
        pipeline, dedupe_engine, caplog):
    pipeline.apply_batch(0, [record_message(SEALER, "inc-a", "gp", "gp-1", **AROHA)])
    # inc-b, on the same partition, holds a record this instance cannot open: its state
    # cannot be rebuilt.
    unreadable = record_message(OTHER_KEY, "inc-b", "gp", "gp-1", **HEMI)
    with session_scope(dedupe_engine) as session:
        incident = store.ensure_incident(session, "inc-b")
        incident.partition = 0
        store.save_stream_state(session, incident)
        store.write_records(session, "inc-b", {("gp", "gp-1"): RecordMeta(1, None, False, False, ())},
                            {("gp", "gp-1"): unreadable}, unreadable.received_at)
        store.request_manual_release(session, "inc-a", unreadable.received_at)

    before = failures("tick")
    with caplog.at_level(logging.WARNING, logger="services.dedupe.pipeline"):
        assert pipeline.tick({0}) == 1  # inc-a is released, whatever inc-b does
    assert notices(dedupe_engine, "inc-a") == 1 and failures("tick") == before + 1
    # The log line says where it was raised (code, not the message): what ops need to find it.
    (logged,) = [r for r in caplog.records if getattr(r, "incident_id", None) == "inc-b"]
    assert re.fullmatch(r"\w+\.py:\d+ \w+", logged.raised_at), logged.raised_at
    assert HEMI["nhi"] not in logged.getMessage() + logged.raised_at
    first = pipeline.failures.failing()["inc-b"]
    assert pipeline.tick({0}) == 0 and failures("tick") == before + 1  # waits its turn
    wait_out(pipeline, "inc-b")
    pipeline.tick({0})
    second = pipeline.failures.failing()["inc-b"]
    assert second.count == 2 and second.retry_at - first.retry_at == 2.0  # backing off

    with session_scope(dedupe_engine) as session:  # the unreadable record is dealt with
        session.execute(RecordState.__table__.delete().where(RecordState.incident_id == "inc-b"))
    wait_out(pipeline, "inc-b")
    pipeline.tick({0})
    assert pipeline.failures.failing() == {}
