"""Real-broker helpers for the lag tests: topics filled per partition, a consumer group member
that consumes and commits what the test says, and a clock the test moves."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from testkit.infra import WAIT_S


class ManualClock:
    def __init__(self, start: datetime | None = None):
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
        for _ in range(100):  # wait until the leaders are known
            described = await admin.describe_topics([name])
            if described[0]["error_code"] == 0 and len(described[0]["partitions"]) == partitions:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"topic {name} did not appear")
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    """Write counts[partition] records to each partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, b"synthetic", partition=p)
                   for p, n in counts.items() for _ in range(n)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def delete_records_before(bootstrap: str, topic: str, partition: int, offset: int) -> None:
    """Move a partition's log start offset, as retention would."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, partition): RecordsToDelete(offset)})
    finally:
        await admin.close()


class Member:
    """A member of a consumer group subscribed to one topic (auto-commit off, as the services
    run). It stays in the group (heartbeats) until stopped."""

    def __init__(self, bootstrap: str, group: str, topic: str, isolation_level: str = "read_committed"):
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level=isolation_level)
        self.records: dict[int, list] = {}

    async def __aenter__(self) -> Member:
        await self.consumer.start()
        for _ in range(200):  # joined once partitions are assigned
            self._keep(await self.consumer.getmany(timeout_ms=50))
            if self.consumer.assignment():
                return self
        raise AssertionError("the member was never assigned a partition")

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def consume(self, counts: dict[int, int], timeout: float = WAIT_S) -> None:
        """Read until at least counts[partition] records of each partition are in hand."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(len(self.records.get(p, [])) < n for p, n in counts.items()):
            if loop.time() > deadline:
                raise AssertionError(f"consumed only {({p: len(r) for p, r in self.records.items()})}")
            self._keep(await self.consumer.getmany(timeout_ms=200))

    def _keep(self, batches: dict) -> None:
        for tp, records in batches.items():
            self.records.setdefault(tp.partition, []).extend(records)

    async def consume_and_commit(self, counts: dict[int, int]) -> dict[int, int]:
        """Consume the first counts[p] records of each partition and commit right after them,
        the way ConsumerWorker does (last handled offset + 1). Returns the committed offsets."""
        await self.consume(counts)
        offsets = {p: self.records[p][n - 1].offset + 1 for p, n in counts.items()}
        await self.commit(offsets)
        return offsets

    async def commit(self, offsets: dict[int, int]) -> None:
        await self.consumer.commit({TopicPartition(self.topic, p): o for p, o in offsets.items()})
