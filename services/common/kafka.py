"""Kafka plumbing: topic creation, the idempotent producer, and a consumer worker that
commits offsets only after the handler's work is durable.

Delivery is at-least-once; handlers make their effects idempotent (message ids, record
versions), so a replay after a crash or rebalance changes nothing.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from services.common import metrics
from services.common.settings import ServiceSettings
from services.common.tasks import finish, is_running
from services.common.topics import TopicSpec

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36

BatchHandler = Callable[[TopicPartition, list[ConsumerRecord]], Awaitable[None]]


class PartitionBusy(Exception):  # noqa: N818 - a signal to the worker, not an error
    """Raised by a batch handler: this partition's batch cannot be handled now, through no
    fault of its messages (e.g. state is being rebuilt in the background, or another
    instance owns the partition's state). The worker commits nothing, seeks back to the
    batch's first offset and pauses the partition — polling the others, so the consumer
    stays in its group however long it takes — until `until` completes (None: until the
    partition is revoked). Not counted as an error, never retried as one."""

    def __init__(self, until: Awaitable | None = None):
        super().__init__("partition busy")
        self.until = until
PartitionsHook = Callable[[set[TopicPartition]], Awaitable[None]]
TickHook = Callable[[set[TopicPartition]], Awaitable[None]]


async def ensure_topics(settings: ServiceSettings, specs: Iterable[TopicSpec]) -> None:
    """Create the topics this service uses, if missing. Safe to call from every replica."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        new = [
            NewTopic(
                name=spec.full_name(settings.topic_prefix),
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs=spec.kafka_configs(),
            )
            for spec in specs
        ]
        response = await admin.create_topics(new)
        for topic, code, *_ in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise KafkaError(f"could not create topic {topic}: error code {code}")
    finally:
        await admin.close()


def make_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    # Idempotence (implies acks=all) so a retried send never writes a message twice.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=1024 * 1024,
        client_id=settings.service_name,
    )


async def kafka_reachable(settings: ServiceSettings) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=3000
    )
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()


class _Listener(ConsumerRebalanceListener):
    """Keeps the worker's view of owned partitions; hooks stay short so getmany() isn't stalled."""

    def __init__(self, worker: "ConsumerWorker"):
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.worker.owned -= set(revoked)
        if self.worker.on_revoked:
            await self.worker.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.worker.owned |= set(assigned)
        if self.worker.on_assigned:
            await self.worker.on_assigned(set(assigned))


class ConsumerWorker:
    """Consume → handle (durably) → commit the handled offsets, one partition batch at a time."""

    def __init__(
        self,
        settings: ServiceSettings,
        group: str,
        topics: Iterable[TopicSpec],
        handler: BatchHandler,
        on_assigned: PartitionsHook | None = None,
        on_revoked: PartitionsHook | None = None,
        on_tick: TickHook | None = None,
        tick_interval_s: float = 1.0,
    ):
        self.settings = settings
        self.group_id = settings.consumer_group(group)
        self.topic_names = [t.full_name(settings.topic_prefix) for t in topics]
        self.handler = handler
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        # Time-driven work (deadlines, retries) runs in the consumer's own task, between
        # batches, so it never races the handler over the same partitions' state.
        self.on_tick = on_tick
        self.tick_interval_s = tick_interval_s
        self._last_tick = 0.0
        self.owned: set[TopicPartition] = set()
        self.consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.group_id,
            client_id=f"{self.settings.service_name}-{self.group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group must not skip records already published
            isolation_level="read_committed",
            max_poll_interval_ms=300_000,
        )
        await self.consumer.start()
        self.consumer.subscribe(self.topic_names, listener=_Listener(self))
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.group_id}")

    async def stop(self, grace_s: float = 30.0) -> None:
        """Finish the batch in hand (so its offsets are committed), then leave the group."""
        self._stopping.set()
        await finish(self._task, grace_s)
        if self.consumer:
            await self.consumer.stop()

    @property
    def running(self) -> bool:
        return is_running(self._task)

    async def _run(self) -> None:
        assert self.consumer is not None
        while not self._stopping.is_set():
            try:
                batches = await self.consumer.getmany(
                    timeout_ms=self.settings.consumer_poll_timeout_ms,
                    max_records=self.settings.consumer_batch_max_records,
                )
                for tp, records in batches.items():
                    await self._handle(tp, records)
                if self.on_tick and time.monotonic() - self._last_tick >= self.tick_interval_s:
                    self._last_tick = time.monotonic()
                    await self.on_tick(set(self.owned))
            except asyncio.CancelledError:
                raise
            except Exception:  # keep consuming; the uncommitted batch is redelivered
                log.exception("consumer %s: batch failed; retrying from last commit", self.group_id)
                metrics.CONSUMER_ERRORS.labels(group=self.group_id).inc()
                await self._rewind_to_committed()
                await asyncio.sleep(1.0)

    async def _handle(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        started = time.perf_counter()
        try:
            await self.handler(tp, records)
        except PartitionBusy as busy:
            self._pause(tp, records[0].offset, busy.until)
            return
        metrics.CONSUMER_BATCH_SECONDS.labels(group=self.group_id).observe(
            time.perf_counter() - started
        )
        metrics.MESSAGES_CONSUMED.labels(group=self.group_id, topic=tp.topic).inc(len(records))
        if tp not in self.owned:
            return  # revoked while we worked: the new owner replays; effects are idempotent
        try:
            await self.consumer.commit({tp: records[-1].offset + 1})
        except (CommitFailedError, IllegalStateError):
            log.warning("consumer %s: commit lost to a rebalance; batch will replay", self.group_id)

    def _pause(self, tp: TopicPartition, offset: int, until: Awaitable | None) -> None:
        """Redeliver from `offset` once `until` is done; meanwhile other partitions go on."""
        self.consumer.seek(tp, offset)
        self.consumer.pause(tp)
        if until is not None:
            def resume(_done: object) -> None:
                if tp in self.owned and tp in self.consumer.assignment():
                    self.consumer.resume(tp)
            asyncio.ensure_future(until).add_done_callback(resume)

    async def _rewind_to_committed(self) -> None:
        # After a failed batch, fetch again from the last commit rather than skip ahead.
        for tp in list(self.owned):
            committed = await self.consumer.committed(tp)
            if committed is not None:
                self.consumer.seek(tp, committed)
            else:
                await self.consumer.seek_to_beginning(tp)


class TopicFollower:
    """Follows a whole (compacted) topic from the beginning without a consumer group: every
    replica sees every message, e.g. each incident's latest state. No offsets are committed —
    the handler must be idempotent (apply only newer revisions)."""

    def __init__(self, settings: ServiceSettings, topic: TopicSpec, handler: BatchHandler):
        self.settings = settings
        self.topic_name = topic.full_name(settings.topic_prefix)
        self.handler = handler
        self.consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id=f"{self.settings.service_name}-follow-{self.topic_name}",
        )
        await self.consumer.start()
        partitions = self.consumer.partitions_for_topic(self.topic_name)
        for _ in range(100):  # a topic created a moment ago takes a while to show in metadata
            if partitions:
                break
            await self.consumer._client.force_metadata_update()
            partitions = self.consumer.partitions_for_topic(self.topic_name)
            if not partitions:
                await asyncio.sleep(0.1)
        if not partitions:
            raise KafkaError(f"topic {self.topic_name} has no partitions in the cluster metadata")
        tps = [TopicPartition(self.topic_name, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._end = await self.consumer.end_offsets(tps)
        self._task = asyncio.create_task(self._run(), name=f"follow:{self.topic_name}")

    async def stop(self) -> None:
        await finish(self._task)  # nothing to commit: stop at once
        if self.consumer:
            await self.consumer.stop()

    @property
    def running(self) -> bool:
        return is_running(self._task)

    @property
    def group_id(self) -> str:  # for readiness reporting beside consumer workers
        return f"follow:{self.topic_name}"

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(
                timeout_ms=self.settings.consumer_poll_timeout_ms, max_records=500)
            for tp, records in batches.items():
                try:
                    await self.handler(tp, records)
                except Exception:  # keep following; re-read the failed batch
                    log.exception("follower %s: batch failed; retrying", self.topic_name)
                    self.consumer.seek(tp, records[0].offset)
                    await asyncio.sleep(1.0)
            if not self.caught_up.is_set():
                positions = [await self.consumer.position(tp) for tp in self._end]
                if all(pos >= end for pos, end in zip(positions, self._end.values(), strict=True)):
                    self.caught_up.set()
