"""The two Kafka inputs of dispatch.

- incidents.v1 (compacted): each incident's content and channel policy, stored in
  dispatch_incident (latest revision wins); notices that were waiting for it are planned.
- notices.v1: each notice (and amendment, its own notice_id) is stored and its deliveries are
  queued. Idempotent: a replayed notice finds itself already stored and changes nothing.
  The consumer only records; the sender sends. While more than `max_pending` deliveries are
  unfinished, notice consumption is paused (consumer.pause), so nothing buffers unboundedly.
"""

import logging
from collections.abc import Callable
from datetime import datetime

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy.engine import Engine

from services.common.db import run_db
from services.common.kafka import ConsumerWorker
from services.common.messages import decode_incident, decode_notice
from services.dispatch import metrics, store
from services.dispatch.policy import QuietHours

log = logging.getLogger(__name__)


class IncidentHandler:
    def __init__(self, engine: Engine, book: store.IncidentBook, quiet: QuietHours | None,
                 clock: Callable[[], datetime], on_change: Callable[[], None]):
        self.engine, self.book, self.quiet, self.clock = engine, book, quiet, clock
        self.on_change = on_change

    async def __call__(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        changed = False
        for record in records:
            if record.value is None:  # tombstone: keep what we have (notices may still need it)
                continue
            message = decode_incident(record.value)
            if await run_db(store.upsert_incident, self.engine, self.book, message, record.value):
                changed = True
                while await run_db(store.plan_waiting, self.engine, self.book, self.quiet,
                                   self.clock(), message.incident_id) > 0:
                    pass  # in batches, until every waiting notice of the incident is planned
        if changed:
            self.on_change()


class NoticeHandler:
    def __init__(self, engine: Engine, book: store.IncidentBook, quiet: QuietHours | None,
                 clock: Callable[[], datetime], on_change: Callable[[], None], max_pending: int):
        self.engine, self.book, self.quiet, self.clock = engine, book, quiet, clock
        self.on_change = on_change
        self.max_pending = max_pending
        self.worker: ConsumerWorker | None = None
        self.pending = 0
        self.paused = False

    async def __call__(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        notices = [(decode_notice(r.value), r.value) for r in records]
        created = await run_db(
            store.record_notices, self.engine, self.book, notices, self.quiet, self.clock()
        )
        if created:
            self.pending += created
            self.on_change()
            self._apply_backpressure()

    def update_pending(self, pending: int) -> None:
        """Called by the sender's housekeeping with the measured count."""
        self.pending = pending
        self._apply_backpressure()

    def _apply_backpressure(self) -> None:
        worker = self.worker
        if worker is None or worker.consumer is None:
            return
        owned = [tp for tp in worker.owned]
        if self.pending >= self.max_pending:
            if owned:
                worker.consumer.pause(*owned)  # re-applied each tick: covers new assignments
            if not self.paused:
                log.info("dispatch: pausing notice consumption", extra={"count": self.pending})
            self.paused = True
        elif self.paused and self.pending < self.max_pending // 2:
            if owned:
                worker.consumer.resume(*owned)
            log.info("dispatch: resuming notice consumption", extra={"count": self.pending})
            self.paused = False
        metrics.CONSUMPTION_PAUSED.set(1 if self.paused else 0)
