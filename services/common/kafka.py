"""Kafka plumbing: topic creation, the idempotent producer, and the two ways a service reads a
topic — a consumer worker in a group that commits offsets only after the handler's work is
durable, and a follower that reads a whole compacted topic without a group.

Delivery is at-least-once; handlers make their effects idempotent (message ids, record
versions), so a replay after a crash or rebalance changes nothing. What happens to a message
that cannot be decoded or applied is consuming.py's business; both readers run as supervised
loops (tasks.py) that restart with a fresh consumer after a crash.

Rebalances: aiokafka calls the listener from its coordinator task in the middle of the
rebalance, with the member's generation still valid. `on_partitions_revoked` waits (up to
`consumer_revoke_wait_s`) for the batch in hand to finish and commit, and only then drops the
partitions' state — so two owners never work on one partition at once. The broker waits for a
member that is in its listener for the rebalance timeout, which is therefore set above that
wait; heartbeats go on meanwhile, so the session timeout is not at stake.

A handler that cannot handle a partition's batch now (state being rebuilt) raises
PartitionBusy: the worker seeks back, commits nothing for it and pauses that partition alone
until the handler's awaitable is done, polling the rest meanwhile.

Over 400 lines on purpose: the worker's poll, pause, commit and rebalance paths interlock
and read best whole; topics and the producer are small and sit with them, and what happens to
the messages themselves already lives in consuming.py.
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
from services.common.consuming import (
    BatchHandler,
    BatchProcessor,
    Consumed,
    Decoder,
    PartitionBusy,
    is_transient,
)
from services.common.deadletters import DeadLetterPublisher
from services.common.kafka_client import client_options
from services.common.settings import ServiceSettings
from services.common.tasks import RestartPolicy, SupervisedLoop, finish
from services.common.topics import TopicSpec

__all__ = ["BatchHandler", "Consumed", "ConsumerWorker", "Decoder", "MissingTopics", "PartitionBusy",
           "TopicFollower", "ensure_topics", "kafka_reachable", "make_producer", "restart_policy"]

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36

PartitionsHook = Callable[[set[TopicPartition]], Awaitable[None]]
TickHook = Callable[[set[TopicPartition]], Awaitable[None]]


class MissingTopics(KafkaError):
    """PANUI_KAFKA_CREATE_TOPICS=false and a topic the service uses does not exist."""

    def __init__(self, topics: list[str]):
        self.topics = topics
        super().__init__(f"topic(s) missing on the cluster: {', '.join(topics)} (PANUI_KAFKA_"
                         "CREATE_TOPICS=false: the platform must create them; see docs/operations.md)")


async def ensure_topics(settings: ServiceSettings, specs: Iterable[TopicSpec]) -> None:
    """Create the topics this service uses, if missing. Safe to call from every replica. With
    kafka_create_topics off (ACL'd clusters) only check that they exist: MissingTopics names
    those that do not."""
    specs = list(specs)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        if not settings.kafka_create_topics:
            existing = set(await admin.list_topics())
            missing = [n for spec in specs if (n := spec.full_name(settings.topic_prefix)) not in existing]
            if missing:
                raise MissingTopics(missing)
            return
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
        **client_options(settings),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=1024 * 1024,
        client_id=settings.service_name,
    )


async def kafka_reachable(settings: ServiceSettings) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=3000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()


def restart_policy(settings: ServiceSettings) -> RestartPolicy:
    return RestartPolicy(base_s=settings.worker_restart_base_s, cap_s=settings.worker_restart_max_s,
                         give_up_after=settings.worker_give_up_after,
                         window_s=settings.worker_give_up_window_s,
                         wedged_after_s=settings.worker_wedged_after_s)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: "ConsumerWorker"):
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker._revoke(set(revoked))  # noqa: SLF001 - the worker's own listener

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        worker = self.worker
        worker.owned |= set(assigned)
        if worker.on_assigned:
            await worker.on_assigned(set(assigned))


class ConsumerWorker:
    """Consume → handle (durably) → commit the handled offsets, one partition batch at a time.

    `decode` turns a record's value into the contract message (it raises on anything else);
    `handler(tp, batch)` gets the decoded batch (see consuming.BatchHandler)."""

    def __init__(
        self,
        settings: ServiceSettings,
        group: str,
        topics: Iterable[TopicSpec],
        handler: BatchHandler,
        *,
        decode: Decoder,
        dead_letters: DeadLetterPublisher | None,
        on_assigned: PartitionsHook | None = None,
        on_revoked: PartitionsHook | None = None,
        on_tick: TickHook | None = None,
        tick_interval_s: float = 1.0,
    ):
        topics = list(topics)
        self.settings = settings
        self.group_id = settings.consumer_group(group)
        self.topic_names = [t.full_name(settings.topic_prefix) for t in topics]
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        # Time-driven work (deadlines, retries) runs in the consumer's own task, between
        # batches, so it never races the handler over the same partitions' state.
        self.on_tick = on_tick
        self.tick_interval_s = tick_interval_s
        self._last_tick = 0.0
        self.owned: set[TopicPartition] = set()
        self.consumer: AIOKafkaConsumer | None = None
        self._connected: AIOKafkaConsumer | None = None  # made by start(), used by the loop
        self._stopping = asyncio.Event()
        self._revoking: set[TopicPartition] = set()
        self._revocations = 0  # counts revocations: a batch fetched before one is stale
        self._in_hand = asyncio.Lock()  # held while a batch (or tick) is being worked on
        self._background: set[asyncio.Task] = set()
        self.processor = BatchProcessor(
            settings, self.group_id, decode, handler, dead_letters,
            {t.full_name(settings.topic_prefix) for t in topics if t.compacted}, self._abandon)
        self.loop = SupervisedLoop(f"consumer:{self.group_id}", self._session,
                                   service=settings.service_name, should_stop=self._stopping.is_set,
                                   policy=restart_policy(settings), transient=is_transient)

    async def start(self) -> None:
        # The first connection is made here, so a service that cannot reach Kafka fails to start.
        self._connected = self.consumer = await self._connect()
        self.loop.start()

    async def stop(self, grace_s: float | None = None) -> None:
        """Finish the batch in hand (so its offsets are committed), then leave the group. A
        handler doing long work in steps checks `stopping` between them (dedupe's release
        chunks): work in a thread goes on after its task is cancelled, past the grace
        (`consumer_stop_grace_s` unless given)."""
        self._stopping.set()
        log.info("consumer %s: stopping; the work in hand finishes", self.group_id,
                 extra={"group": self.group_id})
        await finish(self.loop.task,
                     self.settings.consumer_stop_grace_s if grace_s is None else grace_s)
        if self._connected is not None:  # started but the loop never took it
            await self._connected.stop()
            self._connected = None

    @property
    def running(self) -> bool:
        return self.loop.running

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def owns(self, tp: TopicPartition) -> bool:
        """True while this worker owns `tp` and no revocation of it has begun (a handler may
        check this before making a long piece of work durable)."""
        return tp in self.owned and tp not in self._revoking

    def _abandon(self, tp: TopicPartition) -> bool:
        return self._stopping.is_set() or not self.owns(tp)

    async def _connect(self) -> AIOKafkaConsumer:
        s = self.settings
        consumer = AIOKafkaConsumer(
            **client_options(s),
            group_id=self.group_id,
            client_id=f"{s.service_name}-{self.group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group must not skip records already published
            isolation_level="read_committed",
            max_poll_interval_ms=s.consumer_max_poll_interval_ms,
            session_timeout_ms=s.consumer_session_timeout_ms,
            heartbeat_interval_ms=min(s.consumer_heartbeat_interval_ms,
                                      s.consumer_session_timeout_ms // 3),
            # The broker waits this long for a member still in on_partitions_revoked.
            rebalance_timeout_ms=int((s.consumer_revoke_wait_s + 30) * 1000),
        )
        await consumer.start()
        return consumer

    async def _session(self) -> None:
        """One consumer's life: subscribe, consume until stopped; raises on a crash, after
        which the supervisor starts another session with a fresh consumer."""
        consumer, self._connected = self._connected or await self._connect(), None
        self.consumer = consumer
        try:
            consumer.subscribe(self.topic_names, listener=_Listener(self))
            while not self._stopping.is_set():
                revocations = self._revocations
                batches = await consumer.getmany(timeout_ms=self.settings.consumer_poll_timeout_ms,
                                                 max_records=self.settings.consumer_batch_max_records)
                async with self._in_hand:
                    with self.loop.working():
                        await self._work(consumer, revocations, batches)
        finally:
            await self._end_session(consumer)

    async def _work(self, consumer: AIOKafkaConsumer, revocations: int,
                    batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        if revocations != self._revocations:
            # Fetched before a revocation: hand none of it in; what is still (or again) ours
            # is fetched again from the last commit.
            for tp in batches:
                if self.owns(tp):
                    await self._seek_to_committed(consumer, tp)
            return
        for tp, records in batches.items():
            if self._stopping.is_set():
                return  # not handled, not committed: the next owner reads them again
            if not self.owns(tp):
                continue
            try:
                done = await self.processor.process(tp, records)
            except PartitionBusy as busy:
                self._pause(consumer, tp, records[0].offset, busy.until)
                continue
            if done:
                await self._commit(consumer, tp, records[-1].offset + 1)
            elif self.owns(tp) and not self._stopping.is_set():
                await self._seek_to_committed(consumer, tp)
        if not self._stopping.is_set():  # time-driven work waits for the next start
            await self._tick()

    def _pause(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int,
               until: Awaitable | None) -> None:
        """Redeliver from `offset` once `until` is done (PartitionBusy); nothing of the batch
        is committed, and meanwhile the other partitions go on."""
        consumer.seek(tp, offset)
        consumer.pause(tp)
        if until is None:
            return  # until revoked: a new assignment starts unpaused

        def resume(done: asyncio.Future) -> None:
            if not done.cancelled():
                done.exception()  # the handler's business (it asks again on redelivery)
            # Only the same consumer, still owning it: a new session or owner starts unpaused.
            if self.consumer is consumer and self.owns(tp) and tp in consumer.assignment():
                consumer.resume(tp)

        waiting = asyncio.ensure_future(until)
        self._background.add(waiting)
        waiting.add_done_callback(self._background.discard)
        waiting.add_done_callback(resume)

    async def _tick(self) -> None:
        if not self.on_tick or time.monotonic() - self._last_tick < self.tick_interval_s:
            return
        self._last_tick = time.monotonic()
        owned = {tp for tp in self.owned if self.owns(tp)}
        try:
            await self.on_tick(owned)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - time-driven work is simply tried next tick
            metrics.CONSUMER_ERRORS.labels(group=self.group_id).inc()
            log.warning("consumer %s: tick failed (%s); next tick retries", self.group_id,
                        type(exc).__name__, exc_info=True, extra={"group": self.group_id})

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        delay = self.settings.consumer_retry_backoff_s
        for _ in range(5):
            if tp not in self.owned:
                return  # revoked while we worked (past the wait): the new owner replays
            try:
                await consumer.commit({tp: offset})
                return
            except (CommitFailedError, IllegalStateError):
                break
            except KafkaError as exc:
                if not is_transient(exc):
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.consumer_retry_backoff_max_s)
        log.warning("consumer %s: commit on %s:%d lost to a rebalance or outage; the batch will "
                    "replay", self.group_id, tp.topic, tp.partition, extra={"group": self.group_id})

    async def _seek_to_committed(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        committed = await consumer.committed(tp)
        if committed is not None:
            consumer.seek(tp, committed)
        else:
            await consumer.seek_to_beginning(tp)

    async def _revoke(self, revoked: set[TopicPartition]) -> None:
        """The rebalance listener's revocation: wait for the batch in hand, then let go."""
        if not revoked:
            return  # aiokafka calls this before every join, the first one too
        self._revocations += 1
        self._revoking |= revoked  # a batch retrying on these stops retrying
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._in_hand.acquire(), self.settings.consumer_revoke_wait_s)
        except TimeoutError:
            metrics.CONSUMER_REVOKE_TIMEOUTS.labels(group=self.group_id).inc()
            log.error("consumer %s: the batch in hand outlasted the revoke wait (%.0fs); it will "
                      "not commit, and its partition state is dropped once it ends",
                      self.group_id, self.settings.consumer_revoke_wait_s,
                      extra={"group": self.group_id})
            self.owned -= revoked
            self._revoking -= revoked
            task = asyncio.create_task(self._drop_when_idle(revoked))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        metrics.CONSUMER_REVOKE_WAIT_SECONDS.labels(group=self.group_id).observe(
            time.monotonic() - started)
        try:
            self.owned -= revoked
            self._revoking -= revoked
            if self.on_revoked:
                await self.on_revoked(revoked)
        finally:
            self._in_hand.release()

    async def _drop_when_idle(self, revoked: set[TopicPartition]) -> None:
        async with self._in_hand:
            if self.on_revoked:
                await self.on_revoked(revoked)

    async def _end_session(self, consumer: AIOKafkaConsumer) -> None:
        # Leaving the group calls no listener: drop the partitions' state here, before another
        # member can be given them.
        revoked, self.owned = set(self.owned), set()
        self._revoking.clear()
        try:
            if revoked and self.on_revoked:
                await self.on_revoked(revoked)
        finally:
            self.consumer = None
            try:
                await consumer.stop()
            except Exception as exc:  # noqa: BLE001 - it is being thrown away anyway
                log.warning("consumer %s: stopping the consumer failed (%s)", self.group_id,
                            type(exc).__name__, extra={"group": self.group_id})


class TopicFollower:
    """Follows a whole (compacted) topic from the beginning without a consumer group: every
    replica sees every message, e.g. each incident's latest state. No offsets are committed —
    the handler must be idempotent (apply only newer revisions); a restarted session reads the
    topic from the beginning again. Poison messages are dead-lettered as by ConsumerWorker
    (`panui dead-letters list` shows each origin message once, however many followers saw it)."""

    def __init__(self, settings: ServiceSettings, topic: TopicSpec, handler: BatchHandler, *,
                 decode: Decoder, dead_letters: DeadLetterPublisher | None):
        self.settings = settings
        self.topic_name = topic.full_name(settings.topic_prefix)
        self.consumer: AIOKafkaConsumer | None = None
        self.caught_up = asyncio.Event()
        self._stopping = asyncio.Event()
        self.processor = BatchProcessor(settings, self.group_id, decode, handler, dead_letters,
                                        {self.topic_name} if topic.compacted else set(),
                                        lambda _tp: self._stopping.is_set())
        self.loop = SupervisedLoop(self.group_id, self._session, service=settings.service_name,
                                   should_stop=self._stopping.is_set,
                                   policy=restart_policy(settings), transient=is_transient)
        self._first: tuple[AIOKafkaConsumer, dict] | None = None

    async def start(self) -> None:
        self._first = await self._connect()
        self.consumer = self._first[0]
        self.loop.start()

    async def stop(self) -> None:
        self._stopping.set()
        await finish(self.loop.task)  # nothing to commit: stop at once
        if self._first is not None:
            await self._first[0].stop()
            self._first = None

    @property
    def running(self) -> bool:
        return self.loop.running

    @property
    def group_id(self) -> str:  # for dead letters and health beside consumer workers
        return f"follow:{self.topic_name}"

    async def _connect(self) -> tuple[AIOKafkaConsumer, dict]:
        consumer = AIOKafkaConsumer(
            **client_options(self.settings),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id=f"{self.settings.service_name}-follow-{self.topic_name}",
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self.topic_name)
            for _ in range(100):  # a topic created a moment ago takes a while to show in metadata
                if partitions:
                    break
                await consumer._client.force_metadata_update()  # noqa: SLF001
                partitions = consumer.partitions_for_topic(self.topic_name)
                if not partitions:
                    await asyncio.sleep(0.1)
            if not partitions:
                raise KafkaError(f"topic {self.topic_name} has no partitions in the cluster metadata")
            tps = [TopicPartition(self.topic_name, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            return consumer, await consumer.end_offsets(tps)
        except BaseException:
            await consumer.stop()
            raise

    async def _session(self) -> None:
        (consumer, end), self._first = self._first or await self._connect(), None
        self.consumer = consumer
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(
                    timeout_ms=self.settings.consumer_poll_timeout_ms, max_records=500)
                with self.loop.working():
                    for tp, records in batches.items():
                        if not await self.processor.process(tp, records):
                            return  # stopping
                if not self.caught_up.is_set():
                    positions = [await consumer.position(tp) for tp in end]
                    if all(pos >= e for pos, e in zip(positions, end.values(), strict=True)):
                        self.caught_up.set()
        finally:
            self.consumer = None
            await consumer.stop()
