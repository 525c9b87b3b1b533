"""From fetched records to applied messages, whatever the records hold: what the consumer
worker and the topic follower (kafka.py) share.

Per partition batch, in offset order:
  1. A null value on a compacted topic is a tombstone (the key's state was deleted upstream):
     counted and skipped. On any other topic it is dead-lettered.
  2. Each value is decoded with the topic's contract model. Decoding is deterministic, so a
     value that fails is dead-lettered at once (undecodable, schema-invalid, unknown-version).
  3. The decoded batch goes to the handler, which makes its effects durable (one transaction).
     A handler that raises PartitionBusy is not failing: the signal goes up to the worker,
     which pauses the partition and redelivers the batch later (kafka.py) — unless it comes
     on a retry, when the processor waits for it in place so its attempts are not reset.
     A transient failure (database or broker away) is retried with backoff, without limit and
     never dead-lettered — the partition waits, as it must. Any other failure is retried
     `consumer_batch_attempts` times; then the batch is split in halves, applied in order,
     until the failing message is alone; it is tried `consumer_message_attempts` times and
     dead-lettered (apply-failed), and the rest of the batch carries on.
Only then are the batch's offsets committed, so a crash anywhere replays rather than skips.
The handlers are idempotent (message ids, record versions, revisions), so re-applying the
messages of a half that succeeded before changes nothing, and so does a replayed dead letter
(docs/operations.md). Ordering per key holds for everything applied; a dead-lettered message
is applied later, if at all, by `panui dead-letters replay`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import ConsumerRecord
from sqlalchemy import exc as sa_exc

from services.common import metrics
from services.common.deadletters import DeadLetterPublisher, decode_failure_reason
from services.common.messages import DeadLetterReason
from services.common.settings import ServiceSettings

log = logging.getLogger(__name__)

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class Consumed(Generic[M]):
    """One decoded message with the record it came in (topic, partition, offset, key, the
    original bytes as `record.value`)."""

    record: ConsumerRecord
    message: M


Decoder = Callable[[bytes], Any]
# The handler interface: apply one partition's decoded batch, in order, durably (commit its
# transaction) before returning; raise to have it retried. Never called with an empty batch.
BatchHandler = Callable[[TopicPartition, list[Consumed]], Awaitable[None]]


class PartitionBusy(Exception):  # noqa: N818 - a signal to the worker, not an error
    """Raised by a consumer worker's batch handler: this partition's batch cannot be handled
    now, through no fault of its messages (e.g. state is being rebuilt in the background, or
    another instance owns the partition's state). Never dead-lettered, not counted as an
    error: the processor lets it through and the worker commits nothing for the partition,
    seeks back to the batch's first offset and pauses it, polling the others (so the
    consumer stays in its group however long it takes), until `until` completes (None: until
    the partition is revoked). Raised on a retry of a failing batch (the failure dropped the
    state), the processor awaits `until` in place instead, keeping the attempts counted."""

    def __init__(self, until: Awaitable | None = None):
        super().__init__("partition busy")
        self.until = until


def is_transient(exc: BaseException) -> bool:
    """An error of the environment (database or broker unreachable, a timeout), not of the
    message: retried without limit, never dead-lettered."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError
                  | sa_exc.DisconnectionError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, KafkaConnectionError) or (isinstance(exc, KafkaError) and exc.retriable):
        return True
    return isinstance(exc, ConnectionError | TimeoutError)


class _Failed:
    def __init__(self, exc: Exception, tries: int):
        self.exc, self.tries = exc, tries


_OK, _ABANDONED = object(), object()


class BatchProcessor:
    """Decodes, applies with bounded retries, isolates and dead-letters one partition batch.
    `abandon(tp)` says the batch must stop retrying (the partition is being revoked or the
    worker stops): nothing of it may then be committed."""

    def __init__(self, settings: ServiceSettings, group: str, decode: Decoder,
                 handler: BatchHandler, dead_letters: DeadLetterPublisher | None,
                 compacted_topics: set[str], abandon: Callable[[TopicPartition], bool]):
        self.settings = settings
        self.group = group
        self.decode = decode
        self.handler = handler
        self.dead_letters = dead_letters
        self.compacted = compacted_topics
        self.abandon = abandon

    async def process(self, tp: TopicPartition, records: list[ConsumerRecord]) -> bool:
        """True when every record is applied, skipped or dead-lettered: commit past them."""
        batch: list[Consumed] = []
        for record in records:
            if record.value is None:
                if record.topic in self.compacted:
                    self._tombstone(record)
                else:
                    await self._dead_letter(record, DeadLetterReason.UNEXPECTED_TOMBSTONE, None, 1)
                continue
            try:
                message = self.decode(record.value)
            except Exception as exc:  # noqa: BLE001 - any decoding failure is the message's
                await self._dead_letter(record, decode_failure_reason(record.value, exc), exc, 1)
                continue
            batch.append(Consumed(record, message))
        if not batch:
            return True
        started = time.perf_counter()
        outcome = await self._apply(tp, batch, self.settings.consumer_batch_attempts, first=True)
        if isinstance(outcome, _Failed):
            log.warning("consumer %s: a batch of %d on %s:%d fails every time (%s); isolating "
                        "the failing message", self.group, len(batch), tp.topic, tp.partition,
                        type(outcome.exc).__name__, extra={"group": self.group})
            done = await self._isolate(tp, batch)
        else:
            done = outcome is _OK
        metrics.CONSUMER_BATCH_SECONDS.labels(group=self.group).observe(time.perf_counter() - started)
        if done:
            metrics.MESSAGES_CONSUMED.labels(group=self.group, topic=tp.topic).inc(len(records))
        return done

    async def _apply(self, tp: TopicPartition, batch: list[Consumed], attempts: int,
                     first: bool = False) -> object:
        tries, delay = 0, self.settings.consumer_retry_backoff_s
        while True:
            if self.abandon(tp):
                return _ABANDONED
            try:
                await self.handler(tp, batch)
                return _OK
            except asyncio.CancelledError:
                raise
            except PartitionBusy as busy:
                if (first and tries == 0) or busy.until is None:
                    raise  # the worker pauses the partition (kafka.py)
                # Busy on a retry (the failure dropped state the handler now rebuilds): wait
                # here rather than pause, or the redelivered batch would start counting its
                # attempts again and a poison message would never be dead-lettered.
                if not await self._wait(tp, busy.until):
                    return _ABANDONED
                continue
            except Exception as exc:  # noqa: BLE001 - classified below
                metrics.CONSUMER_ERRORS.labels(group=self.group).inc()
                transient = is_transient(exc)
                if not transient:
                    tries += 1
                log.warning("consumer %s: applying %d message(s) at %s:%d@%d failed (%s%s)",
                            self.group, len(batch), tp.topic, tp.partition,
                            batch[0].record.offset, type(exc).__name__,
                            ", transient: retrying" if transient else f", attempt {tries}",
                            exc_info=tries <= 1, extra={"group": self.group})
                if not transient and tries >= attempts:
                    return _Failed(exc, tries)
                if not await self._backoff(tp, delay):
                    return _ABANDONED
                delay = min(delay * 2, self.settings.consumer_retry_backoff_max_s)

    async def _isolate(self, tp: TopicPartition, batch: list[Consumed]) -> bool:
        """Apply `batch` (known to fail) in order, dead-lettering the messages that fail alone."""
        if len(batch) == 1:
            outcome = await self._apply(tp, batch, self.settings.consumer_message_attempts)
            if isinstance(outcome, _Failed):
                await self._dead_letter(batch[0].record, DeadLetterReason.APPLY_FAILED,
                                        outcome.exc, outcome.tries)
                return True
            return outcome is _OK
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            outcome = await self._apply(tp, half, 1)
            if outcome is _ABANDONED:
                return False
            if isinstance(outcome, _Failed) and not await self._isolate(tp, half):
                return False
        return True

    async def _wait(self, tp: TopicPartition, until: Awaitable) -> bool:
        """Wait for `until` (not cancelling it), waking to stop if the batch must be
        abandoned; False then."""
        waiting = asyncio.ensure_future(until)
        while not waiting.done():
            if self.abandon(tp):
                return False
            await asyncio.wait({waiting}, timeout=0.1)
        if not waiting.cancelled():
            waiting.exception()  # the handler's business: it is asked again now
        return not self.abandon(tp)

    async def _backoff(self, tp: TopicPartition, delay: float) -> bool:
        """Sleep `delay`, waking early if the batch must be abandoned; False then."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            if self.abandon(tp):
                return False
            await asyncio.sleep(min(left, 0.1))
        return not self.abandon(tp)

    def _tombstone(self, record: ConsumerRecord) -> None:
        # A deleted key (issue 18's purge writes these): nothing to apply yet; say so.
        service = self.settings.service_name
        metrics.TOMBSTONES.labels(service=service, group=self.group, topic=record.topic).inc()
        log.info("consumer %s: tombstone at %s:%d@%d skipped", self.group, record.topic,
                 record.partition, record.offset, extra={"group": self.group})

    async def _dead_letter(self, record: ConsumerRecord, reason: DeadLetterReason,
                           exc: BaseException | None, attempts: int) -> None:
        if self.dead_letters is None:
            raise RuntimeError(f"consumer {self.group} has no dead-letter publisher for "
                               f"{record.topic}:{record.partition}@{record.offset} ({reason.value})")
        await self.dead_letters.publish(record, group=self.group, reason=reason, exc=exc,
                                        attempts=attempts)
