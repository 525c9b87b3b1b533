"""Restart of a large incident within limits (issue 10, item 7): the identity state of an
incident not in memory is rebuilt in a thread with its partition paused — the consumer keeps
polling and handling its other partitions, every handler call stays short (so no call can
outlast max.poll.interval, be evicted from the group, drop the state and rebuild again:
the livelock), and the paused partition's batch is applied once the state is held, from its
first offset. The real broker and PostgreSQL; the rebuild is held back by a gate so that
"long" is not a matter of machine speed."""

import asyncio
import threading
import time

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2
from sqlmodel import Session, select

from services.common.crypto import Sealer, generate_key_spec
from services.common.kafka import ConsumerWorker, ensure_topics
from services.common.messages import decode_affected_records_topic
from services.common.outbox import OutboxRelay
from services.common.settings import ServiceSettings
from services.common.topics import AFFECTED_RECORDS
from services.dedupe.consumer import AffectedRecordsHandler
from services.dedupe.models import NoticeState, RecordState
from services.dedupe.pipeline import DedupePipeline
from testkit.messages import completion, incident_message, publish, record_message
from tests.dedupe.conftest import AROHA, HEMI

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SEALER = Sealer(generate_key_spec("rebuild-test"))
AGENCIES = {"gp": "Test GP", "lab": "Test Lab"}
PARTITIONS = 3


def partition_of(incident_id: str) -> int:
    """Where the producer's default partitioner puts the incident's messages."""
    return (murmur2(incident_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def incident_ids() -> tuple[str, str]:
    big = "inc-big"
    small = next(f"inc-small-{n}" for n in range(100)
                 if partition_of(f"inc-small-{n}") != partition_of(big))
    return big, small


def person(n: int) -> dict:
    return {**HEMI, "nhi": f"ZZA{n:04d}", "given_names": f"Test{chr(65 + n % 26)}{n}",
            "date_of_birth": f"19{50 + n % 50}-0{1 + n % 9}-1{n % 10}"}


class GatedPipeline(DedupePipeline):
    """A rebuild that waits for the test to let it go (as a 400k-record one takes minutes)."""

    def __init__(self, *args, gated: str, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.gated = gated
        self.gate = threading.Event()
        self.warms = 0

    def warm(self, partition: int, incident_ids: list[str], assignment: int) -> None:
        if self.gated in incident_ids:
            self.warms += 1
            assert self.gate.wait(60)
        super().warm(partition, incident_ids, assignment)


def count(engine, model, incident_id: str) -> int:  # noqa: ANN001
    with Session(engine) as session:
        return len(session.exec(select(model.id if model is RecordState else model.notice_id)
                                .where(model.incident_id == incident_id)).all())


async def test_a_rebuild_pauses_only_its_partition_and_no_handler_call_waits_for_it(
        dedupe_engine, kafka_bootstrap, topic_prefix):
    big, small = incident_ids()
    # Before the restart: the big incident's records, released (its previous owner).
    before = DedupePipeline(dedupe_engine, SEALER, review_sync_interval_s=0)
    for incident_id in (big, small):
        before.apply_incidents([incident_message(incident_id, AGENCIES, ["gp", "lab"])])
    before.apply_batch(partition_of(big), [
        *(record_message(SEALER, big, "gp", f"gp-{n}", **person(n)) for n in range(200)),
        completion(big, "gp", 200), completion(big, "lab", 0)])
    assert count(dedupe_engine, NoticeState, big) == 200

    settings = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                               consumer_poll_timeout_ms=100, topic_partitions=PARTITIONS)
    await ensure_topics(settings, [AFFECTED_RECORDS])
    pipeline = GatedPipeline(dedupe_engine, SEALER, review_sync_interval_s=0, gated=big)
    handler = AffectedRecordsHandler(pipeline, OutboxRelay(settings, dedupe_engine, None))
    calls: list[float] = []
    revoked: list[set] = []

    async def timed(tp: TopicPartition, batch) -> None:  # noqa: ANN001
        started = time.monotonic()
        try:
            await handler(tp, batch)
        finally:
            calls.append(time.monotonic() - started)

    async def on_revoked(tps: set[TopicPartition]) -> None:
        if tps:  # (the first join revokes nothing)
            revoked.append(tps)
        await handler.revoked(tps)

    handler.worker = ConsumerWorker(settings, "rebuild-test", [AFFECTED_RECORDS], timed,
                                    decode=decode_affected_records_topic, dead_letters=None,
                                    on_revoked=on_revoked, on_tick=handler.tick,
                                    tick_interval_s=0.2)
    topic = f"{topic_prefix}affected-records.v1"
    # After the restart: a late lab record for one of the big incident's persons, and a
    # whole small incident on another partition.
    await publish(kafka_bootstrap, topic, [
        record_message(SEALER, big, "lab", "lab-7", categories=("lab_results",), **person(7)),
        record_message(SEALER, small, "gp", "gp-1", **AROHA),
        record_message(SEALER, small, "lab", "lab-1", categories=("lab_results",), **AROHA),
        completion(small, "gp", 1), completion(small, "lab", 1)])
    await handler.worker.start()
    try:
        async with asyncio.timeout(60):  # the small incident is released meanwhile
            while count(dedupe_engine, NoticeState, small) < 1:
                await asyncio.sleep(0.1)
        held_for = time.monotonic()
        await asyncio.sleep(3.0)  # the big incident's rebuild is "long"
        assert pipeline.warms >= 1 and not pipeline.gate.is_set()
        assert count(dedupe_engine, RecordState, big) == 200  # its batch waits, paused
        big_tp = TopicPartition(topic, partition_of(big))
        assert await handler.worker.consumer.committed(big_tp) is None
        held_for = time.monotonic() - held_for
        assert max(calls) < held_for  # no handler call waited for the rebuild
        assert revoked == []

        pipeline.gate.set()
        async with asyncio.timeout(60):
            while count(dedupe_engine, RecordState, big) < 201:
                await asyncio.sleep(0.1)
        async with asyncio.timeout(30):  # the amendment for the new category
            while count(dedupe_engine, NoticeState, big) < 201:
                await asyncio.sleep(0.1)
        async with asyncio.timeout(30):
            while await handler.worker.consumer.committed(big_tp) != 1:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        assert count(dedupe_engine, NoticeState, big) == 201
        assert count(dedupe_engine, NoticeState, small) == 1
        assert revoked == []
    finally:
        pipeline.gate.set()
        await handler.worker.stop()
