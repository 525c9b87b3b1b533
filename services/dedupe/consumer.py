"""The affected-records consumer: decode, apply durably, wake the outbox relay."""

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from services.common.db import run_db
from services.common.messages import decode_affected_records_topic
from services.dedupe.pipeline import DedupePipeline


class AffectedRecordsHandler:
    def __init__(self, pipeline: DedupePipeline, relay):  # noqa: ANN001
        self.pipeline = pipeline
        self.relay = relay

    async def __call__(self, tp: TopicPartition, batch: list[ConsumerRecord]) -> None:
        messages = [decode_affected_records_topic(r.value) for r in batch]
        if await run_db(self.pipeline.apply_batch, messages):
            self.relay.wake()
