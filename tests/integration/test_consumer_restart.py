"""A consumer stopped mid-stream resumes from its committed offset: every record is applied,
none is applied twice, and exactly one notice exists per record-person."""

import asyncio

import pytest
from prometheus_client import REGISTRY
from sqlmodel import Session, func, select

from services.common.crypto import Sealer
from services.common.db import make_engine
from services.dedupe.app import create_app as create_dedupe
from services.dedupe.models import NoticeState, RecordState
from services.dedupe.settings import DedupeSettings
from testkit.factories import synthetic_person
from testkit.infra import topic_reader
from testkit.messages import completion, incident_message, publish, record_message
from tests.conftest import running

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

RECORDS = 1200


def _messages(sealer: Sealer) -> list:
    """Four incidents (spread over the partitions), their records, then each completion."""
    out = []
    for i in range(RECORDS):
        out.append(record_message(sealer, f"inc-{i % 4}", "lab-test", f"rec-{i:05d}",
                                  categories=("lab_results",), **synthetic_person(i)))
    out += [completion(f"inc-{n}", "lab-test", RECORDS // 4) for n in range(4)]
    return out


def _consumed(group: str, topic: str) -> float:
    return REGISTRY.get_sample_value(
        "panui_messages_consumed_total", {"group": group, "topic": topic}) or 0.0


async def test_restarted_consumer_resumes_without_loss_or_duplicate_effects(
    service_env, pg_database, kafka_bootstrap, topic_prefix
):
    settings = DedupeSettings(**service_env, database_url=pg_database("dedupe"),
                              consumer_batch_max_records=50)
    group = settings.consumer_group("dedupe.affected-records")
    topic = f"{topic_prefix}affected-records.v1"
    sealer = Sealer(settings.data_keys.get_secret_value())

    async with running(create_dedupe(settings)):  # creates the topics
        pass
    await publish(kafka_bootstrap, f"{topic_prefix}incidents.v1",
                  [incident_message(f"inc-{n}", {"lab-test": "Test Lab"}, ["lab-test"])
                   for n in range(4)])
    await publish(kafka_bootstrap, topic, _messages(sealer))

    engine = make_engine(settings.database_url)

    def applied() -> int:
        with Session(engine) as session:
            return session.exec(select(func.count()).select_from(RecordState)).one()

    # First run: stop as soon as part of the stream is handled.
    async with running(create_dedupe(settings)):
        while applied() < RECORDS // 4:
            await asyncio.sleep(0.05)
    first_run = _consumed(group, topic)
    assert 0 < first_run < RECORDS + 4, "the first run must stop mid-stream"

    async with running(create_dedupe(settings)):
        while applied() < RECORDS:
            await asyncio.sleep(0.1)
        async with topic_reader(kafka_bootstrap, f"{topic_prefix}notices.v1") as notices:
            published = await notices.wait_for(lambda m: len(m) >= RECORDS, timeout=60)
            await asyncio.sleep(1.0)  # anything extra would show up now
            await notices.drain()

    # Resumed from the committed offset: nothing handled twice, nothing skipped.
    assert _consumed(group, topic) == RECORDS + 4
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(NoticeState)).one() == RECORDS
    notice_ids = [m.key for m in published]
    assert len(notice_ids) == RECORDS == len(set(notice_ids))
    engine.dispose()
