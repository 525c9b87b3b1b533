"""Kafka glue for dedupe: the affected-records consumer (with its tick for time-driven
release) and the incidents follower. Each decodes its messages and hands them to the
pipeline, which commits before the worker commits the offsets."""

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord

from services.common.db import run_db
from services.common.kafka import PartitionBusy
from services.common.messages import decode_affected_records_topic, decode_incident
from services.common.outbox import OutboxRelay
from services.dedupe.pipeline import DedupePipeline, NotOwner


class AffectedRecordsHandler:
    def __init__(self, pipeline: DedupePipeline, relay: OutboxRelay):
        self.pipeline = pipeline
        self.relay = relay
        self.worker = None  # the ConsumerWorker feeding it (app.py): for its positions

    async def __call__(self, tp: TopicPartition, batch: list[ConsumerRecord]) -> None:
        messages = [decode_affected_records_topic(r.value) for r in batch]
        try:
            released = await run_db(self.pipeline.apply_batch, tp.partition, messages)
        except NotOwner:  # another instance claimed it: leave it paused until revoked
            raise PartitionBusy() from None
        if released:
            self.relay.wake()  # notices were released: publish them without waiting a poll

    async def tick(self, owned: set[TopicPartition]) -> None:
        if not owned:
            return
        caught_up = {tp.partition for tp in owned if await self._caught_up(tp)}
        if await run_db(self.pipeline.tick, {tp.partition for tp in owned}, caught_up):
            self.relay.wake()

    async def _caught_up(self, tp: TopicPartition) -> bool:
        """At the end of the partition's log (as of the last fetch): nothing older waits, so
        its time-driven work may be judged by the wall clock (streamtime.py)."""
        consumer = getattr(self.worker, "consumer", None)
        if consumer is None:
            return False
        try:
            position = await asyncio.wait_for(consumer.position(tp), 0.5)
            end = consumer.last_stable_offset(tp)  # read_committed: the end we can read to
            if end is None or end < 0:
                end = consumer.highwater(tp)
        except (TimeoutError, IllegalStateError, AssertionError):  # moving, or not ours now
            return False
        return end is not None and position >= end

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        self.pipeline.revoked({tp.partition for tp in revoked})


class IncidentsHandler:
    def __init__(self, pipeline: DedupePipeline):
        self.pipeline = pipeline

    async def __call__(self, tp: TopicPartition, batch: list[ConsumerRecord]) -> None:
        await run_db(self.pipeline.apply_incidents, [decode_incident(r.value) for r in batch])
