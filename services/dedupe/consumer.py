"""Kafka glue for dedupe: the affected-records consumer (with its tick for time-driven
release) and the incidents follower. The workers decode (and dead-letter what does not
decode); these hand the messages to the pipeline, which commits before the worker commits
the offsets."""

from aiokafka import TopicPartition

from services.common.db import run_db
from services.common.kafka import Consumed
from services.common.outbox import OutboxRelay
from services.dedupe.pipeline import DedupePipeline


class AffectedRecordsHandler:
    def __init__(self, pipeline: DedupePipeline, relay: OutboxRelay):
        self.pipeline = pipeline
        self.relay = relay

    async def __call__(self, tp: TopicPartition, batch: list[Consumed]) -> None:
        messages = [c.message for c in batch]
        if await run_db(self.pipeline.apply_batch, tp.partition, messages):
            self.relay.wake()  # notices were released: publish them without waiting a poll

    async def tick(self, owned: set[TopicPartition]) -> None:
        if owned and await run_db(self.pipeline.tick, {tp.partition for tp in owned}):
            self.relay.wake()

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        self.pipeline.revoked({tp.partition for tp in revoked})


class IncidentsHandler:
    def __init__(self, pipeline: DedupePipeline):
        self.pipeline = pipeline

    async def __call__(self, tp: TopicPartition, batch: list[Consumed]) -> None:
        await run_db(self.pipeline.apply_incidents, [c.message for c in batch])
