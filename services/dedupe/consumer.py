"""Kafka glue for dedupe: the affected-records consumer (with its tick for time-driven
release) and the incidents follower. The workers decode (and dead-letter what does not
decode); these hand the messages to the pipeline, which commits before the worker commits
the offsets.

An incident whose identity state is not in memory (after a restart, a rebalance, an
eviction) is rebuilt in a thread while its partition is paused (PartitionBusy): the
consumer keeps polling and handling the other partitions, so a rebuild of any size never
makes a handler call outlast max.poll.interval (which would evict the consumer from its
group, drop the state and start the rebuild again)."""

import asyncio
import logging
import time

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from services.common.clock import utcnow
from services.common.crypto import NOTICES, KeyUnavailable, Vault
from services.common.db import Database, run_db
from services.common.kafka import Consumed, PartitionBusy
from services.common.keystore import IncidentKeysHandler, key_wait
from services.common.messages import IncidentPurgedMessage
from services.common.outbox import OutboxRelay
from services.dedupe.pipeline import DedupePipeline, NotOwner

log = logging.getLogger(__name__)


class AffectedRecordsHandler:
    def __init__(self, pipeline: DedupePipeline, relay: OutboxRelay,
                 release_budget_s: float = 2.0):
        self.pipeline = pipeline
        self.relay = relay
        # How long one handler call (or tick) goes on releasing chunks before it lets the
        # consumer poll again; a release in progress goes on at the next batch or tick.
        self.release_budget_s = release_budget_s
        self.worker = None  # the ConsumerWorker feeding it (app.py): for its positions
        self.warming: dict[int, asyncio.Task] = {}  # partition → its rebuild in progress

    async def __call__(self, tp: TopicPartition, batch: list[Consumed]) -> None:
        messages = [c.message for c in batch]
        # Messages of a purged incident (read after its purge): their keys are destroyed.
        purged = await run_db(self.pipeline.purged, {m.incident_id for m in messages})
        messages = [m for m in messages if m.incident_id not in purged]
        if not messages:
            return
        if tp.partition in self.warming:
            raise PartitionBusy(until=self.warming[tp.partition])
        cold = self.pipeline.cold(tp.partition, {m.incident_id for m in messages})
        if cold:
            raise PartitionBusy(until=self._warm(tp.partition, cold))
        try:
            released = await run_db(self.pipeline.apply_batch, tp.partition, messages)
        except KeyUnavailable:  # the incident's data key is still on its way (lifecycle topic)
            raise PartitionBusy(until=key_wait()) from None
        except NotOwner:  # another instance claimed it: leave it paused until revoked
            raise PartitionBusy() from None
        if released:
            self.relay.wake()  # notices were released: publish them without waiting a poll
        await self._continue_release({tp.partition})

    async def _continue_release(self, partitions: set[int]) -> None:
        """Release the next chunks of the releases in progress, each in its own transaction
        (pipeline.continue_release), for up to the budget — and not one more once the service
        is stopping: the chunk in hand commits, the persons left stay dirty for the next start.
        (Cancelling this task would not stop a chunk's thread, only lose track of it.)"""
        deadline = time.monotonic() + self.release_budget_s
        while (not self._stopping() and time.monotonic() < deadline
               and self.pipeline.releasing(partitions)
               and await run_db(self.pipeline.continue_release, partitions)):
            self.relay.wake()

    def _stopping(self) -> bool:
        return bool(getattr(self.worker, "stopping", False))

    def _warm(self, partition: int, incident_ids: list[str]) -> asyncio.Task:
        """Rebuild these incidents in a thread; the partition waits for it (one at a time)."""
        task = self.warming.get(partition)
        if task is None:
            task = asyncio.create_task(self._rebuild(partition, incident_ids),
                                       name=f"dedupe-rebuild:{partition}")
            self.warming[partition] = task
        return task

    async def _rebuild(self, partition: int, incident_ids: list[str]) -> None:
        try:
            await run_db(self.pipeline.warm, partition, incident_ids,
                         self.pipeline.assignment(partition))
        except Exception as exc:  # the batch comes again and asks again: not in a tight loop
            log.warning("identity rebuild failed (%s); retrying", type(exc).__name__,
                        extra={"partition": partition})
            await asyncio.sleep(1.0)
        finally:
            self.warming.pop(partition, None)

    async def tick(self, owned: set[TopicPartition]) -> None:
        partitions = {tp.partition for tp in owned} - set(self.warming)
        if not partitions:
            return
        for partition, incident_ids in (
                await run_db(self.pipeline.cold_with_work, partitions)).items():
            self._warm(partition, incident_ids)  # ticked once they are held
        partitions -= set(self.warming)
        caught_up = {tp.partition for tp in owned
                     if tp.partition in partitions and await self._caught_up(tp)}
        if partitions and await run_db(self.pipeline.tick, partitions, caught_up):
            self.relay.wake()
        await self._continue_release(partitions)

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
    def __init__(self, pipeline: DedupePipeline, vault: Vault | None = None):
        self.pipeline = pipeline
        self.vault = vault

    async def __call__(self, tp: TopicPartition, batch: list[Consumed]) -> None:
        purged = await run_db(self.pipeline.purged, {c.message.incident_id for c in batch})
        messages = [c.message for c in batch if c.message.incident_id not in purged]
        if self.vault is not None:  # the notices data key, before a release seals with it
            for incident_id in {m.incident_id for m in messages}:
                await run_db(self.vault.ensure, incident_id, NOTICES)
        await run_db(self.pipeline.apply_incidents, messages)


class LifecycleHandler:
    """incident-lifecycle.v1: the records data keys (stored), and the purge of an incident."""

    def __init__(self, pipeline: DedupePipeline, db: Database, purposes: tuple[str, ...],
                 relay: OutboxRelay):
        self.pipeline, self.relay = pipeline, relay
        self.keys = IncidentKeysHandler(db, purposes, on_purged=self._purged)

    async def __call__(self, tp: TopicPartition, batch: list[Consumed]) -> None:
        await self.keys(tp, batch)

    async def _purged(self, message: IncidentPurgedMessage) -> None:
        await run_db(self.pipeline.purge, message.incident_id, utcnow())
        log.info("incident purged", extra={"incident_id": message.incident_id})
        self.relay.wake()  # the notices key's tombstone
