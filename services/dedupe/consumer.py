"""Kafka glue for dedupe: the affected-records consumer (with its tick for time-driven
release) and the incidents follower. Each hands decoded messages to the pipeline."""

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from services.common.db import run_db
from services.common.messages import decode_affected_records_topic, decode_incident
from services.dedupe.pipeline import DedupePipeline


class AffectedRecordsHandler:
    def __init__(self, pipeline: DedupePipeline, relay):  # noqa: ANN001
        self.pipeline = pipeline
        self.relay = relay

    async def __call__(self, tp: TopicPartition, batch: list[ConsumerRecord]) -> None:
        messages = [decode_affected_records_topic(r.value) for r in batch]
        if await run_db(self.pipeline.apply_batch, tp.partition, messages):
            self.relay.wake()

    async def tick(self, owned: set[TopicPartition]) -> None:
        if owned and await run_db(self.pipeline.tick, {tp.partition for tp in owned}):
            self.relay.wake()

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        # Another instance now owns these incidents; it rebuilds their resolvers itself.
        self.pipeline.identity.forget_partitions({tp.partition for tp in revoked})


class IncidentsHandler:
    def __init__(self, pipeline: DedupePipeline):
        self.pipeline = pipeline

    async def __call__(self, tp: TopicPartition, batch: list[ConsumerRecord]) -> None:
        await run_db(self.pipeline.apply_incidents, [decode_incident(r.value) for r in batch])
