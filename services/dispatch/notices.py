"""The two Kafka inputs of dispatch.

- incidents.v1 (compacted): each incident's content and channel policy, stored in
  dispatch_incident (latest revision wins); notices that were waiting for it are planned.
- notices.v1: each notice (and amendment, its own notice_id) is stored and its deliveries are
  queued; a notice-hold (a notified person held under s 116 now, or no longer) is stored for
  the call centre. Idempotent: a replayed notice finds itself already stored and changes nothing.
  The consumer only records; the sender sends. While more than `max_pending` deliveries are
  unfinished, notice consumption is paused (consumer.pause), so nothing buffers unboundedly.
"""

import logging
from collections.abc import Callable
from datetime import datetime

from aiokafka import TopicPartition
from sqlmodel import Session

from services.common import keystore, retention
from services.common.clock import Clock, utcnow
from services.common.crypto import envelope_key_id
from services.common.db import Database
from services.common.kafka import Consumed, ConsumerWorker, PartitionBusy
from services.common.keystore import IncidentKeysHandler, key_wait, missing_keys
from services.common.messages import IncidentPurgedMessage, NoticeHoldMessage
from services.dispatch import metrics, tracking
from services.dispatch.incidents import IncidentBook
from services.dispatch.policy import QuietHours
from services.dispatch.store import retention as retention_store
from services.dispatch.store.incidents import upsert_incident

log = logging.getLogger(__name__)


class IncidentHandler:
    def __init__(self, db: Database, book: IncidentBook, quiet: QuietHours | None, clock: Clock,
                 on_change: Callable[[], None]):
        self.db, self.book, self.quiet, self.clock = db, book, quiet, clock
        self.on_change = on_change

    async def __call__(self, tp: TopicPartition, batch: list[Consumed]) -> None:
        # Tombstones never get here (the worker skips them): we keep what we have.
        changed = False
        for item in batch:
            message = item.message
            stored, latest = await self.db.run(upsert_incident, message, item.record.value)
            self.book.remember(latest)  # once committed
            if stored:
                changed = True
                # One transaction per batch, until every waiting notice of the incident is planned.
                while await self.db.run(tracking.plan_waiting, self.book, self.quiet, self.clock(),
                                        message.incident_id) > 0:
                    pass
        if changed:
            self.on_change()


class NoticeHandler:
    def __init__(self, db: Database, book: IncidentBook, quiet: QuietHours | None, clock: Clock,
                 on_change: Callable[[], None], max_pending: int):
        self.db, self.book, self.quiet, self.clock = db, book, quiet, clock
        self.on_change = on_change
        self.max_pending = max_pending
        self.worker: ConsumerWorker | None = None
        self.pending = 0
        self.paused = False

    async def __call__(self, tp: TopicPartition, batch: list[Consumed]) -> None:
        holds = [c.message for c in batch if isinstance(c.message, NoticeHoldMessage)]
        if holds:  # whether notified persons are held now: for the call centre
            await self.db.run(tracking.record_holds, holds)
        notices = [(c.message, c.record.value) for c in batch
                   if not isinstance(c.message, NoticeHoldMessage)]
        if not notices:
            return
        gone = await self.db.run(keystore.destroyed, [m.sealed for m, _ in notices])
        if gone:  # of a purged incident, published before its purge: nothing to send
            notices = [(m, v) for m, v in notices if envelope_key_id(m.sealed)[1] not in gone]
        if await self.db.run(missing_keys, [m.sealed for m, _ in notices]):
            raise PartitionBusy(until=key_wait())  # a data key still on its way (lifecycle topic)
        created = await self.db.run(
            tracking.record_notices, self.book, notices, self.quiet, self.clock()
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


class LifecycleHandler:
    """incident-lifecycle.v1: the purge of an incident (dispatch holds no records key, so it
    keeps none of the records keys it reads there), and notice-keys.v1: the notices keys."""

    def __init__(self, db: Database, purposes: tuple[str, ...], forget: Callable[[str], None]):
        self.db, self.forget = db, forget
        self.keys = IncidentKeysHandler(db, purposes, on_purged=self._purged)

    async def __call__(self, tp: TopicPartition, batch: list[Consumed]) -> None:
        await self.keys(tp, batch)

    async def _purged(self, message: IncidentPurgedMessage) -> None:
        if await self.db.run(purge_incident, message.incident_id, utcnow()):
            self.forget(message.incident_id)
            log.info("incident purged", extra={"incident_id": message.incident_id})


def purge_incident(session: Session, incident_id: str, now: datetime) -> bool:
    """Delete dispatch's rows of the incident, destroy its notices data key, keep the audit
    summary; False when done before (the lifecycle topic is read from its start)."""
    retention.hold_for_purge(session, incident_id)  # waits for a batch of notices storing it
    if retention.happened(session, incident_id, "purged"):
        return False
    counts = retention_store.purge_incident(session, incident_id)
    counts["data_keys_destroyed"] = len(keystore.destroy_incident(session, incident_id))
    retention.record(session, incident_id, "purged", counts, actor="dispatch:purge", at=now)
    return True
