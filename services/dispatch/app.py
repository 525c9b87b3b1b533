"""Dispatch: renders and sends each released notice; tracks every delivery.

The composition root: settings become the policies, the incident book, the providers, the
sender and the consumers, wired to the shared runtime and the HTTP routes (api.py).
"""

import logging
from collections.abc import Sequence
from datetime import timedelta

from fastapi import FastAPI

from services.common import crypto
from services.common.clock import Clock, utcnow
from services.common.kafka import ConsumerWorker, TopicFollower
from services.common.messages import (
    decode_incident,
    decode_incident_lifecycle,
    decode_notices_topic,
)
from services.common.runtime import ServiceRuntime, create_service_app
from services.common.signing import verifying
from services.common.tasks import SupervisedLoop
from services.common.topics import (
    DELIVERY_EVENTS,
    DISPATCH_INCIDENTS,
    DISPATCH_NOTICES,
    INCIDENT_LIFECYCLE,
    INCIDENTS,
    NOTICE_KEYS,
    NOTICES,
)
from services.dispatch import (
    api,
    callcentre_api,
    check_api,
    mailout_api,
    notice_api,
    reconciliation_api,
    tracking,
)
from services.dispatch.delivery_state import ReceiptOutcome
from services.dispatch.genuine import CHECK_CLIENT_LABEL, CheckLimits
from services.dispatch.incidents import IncidentBook
from services.dispatch.models import MODELS
from services.dispatch.notices import IncidentHandler, LifecycleHandler, NoticeHandler
from services.dispatch.policy import QuietHours, RetryPolicy
from services.dispatch.providers.base import EmailProvider, SmsProvider
from services.dispatch.providers.factory import (
    build_dry_run_providers,
    build_email_provider,
    build_sms_provider,
)
from services.dispatch.providers.receipts import Receipt
from services.dispatch.receipt_batches import CommitGate, ReceiptBatches
from services.dispatch.sender import Sender
from services.dispatch.settings import DispatchSettings


class DispatchRuntime(ServiceRuntime):
    """The shared runtime plus dispatch's parts: the incident book, the retry and quiet-hours
    policies, the clock, and the sender loop, started after the outbox relay and stopped
    before it (so the last results and their events are written and published)."""

    settings: DispatchSettings

    def __init__(self, settings: DispatchSettings, clock: Clock,
                 email: EmailProvider | None = None, sms: SmsProvider | None = None):
        self.clock: Clock = clock
        self.quiet: QuietHours | None = (
            QuietHours(settings.quiet_hours_start, settings.quiet_hours_end)
            if settings.quiet_hours_enabled else None
        )
        self.retry = RetryPolicy(
            base_seconds=settings.retry_base_s, cap_seconds=settings.retry_cap_s,
            max_attempts=settings.retry_max_attempts,
            max_total=timedelta(seconds=settings.retry_max_total_s),
        )
        self.book = IncidentBook()
        self.receipts = ReceiptBatches(
            self._record_receipts, service=settings.service_name,
            window_s=settings.receipt_batch_window_s, max_batch=settings.receipt_batch_max,
            max_wait_s=settings.receipt_queue_max_s, retry_after_s=settings.receipt_retry_after_s,
        )
        self.sender: Sender | None = None  # built at start: its providers open connections
        self.notice_handler: NoticeHandler | None = None
        self._email, self._sms = email, sms
        super().__init__(
            settings, MODELS, [INCIDENTS, NOTICES, DELIVERY_EVENTS, NOTICE_KEYS, INCIDENT_LIFECYCLE],
            workers=self._make_workers,
            on_start=self._start_sender,
        )
        # The shared per-client buckets are keyed by a digest of the address under the notices
        # KEK (every replica holds it; a subkey of its own label): never the address itself.
        notices_kek = self.keks[crypto.NOTICES]
        self.check_limits = CheckLimits(
            settings.check_requests_per_minute, settings.check_burst, settings.check_global_per_s,
            settings.check_global_burst,
            digest=lambda address: notices_kek.digest(address, label=CHECK_CLIENT_LABEL,
                                                      key_id=notices_kek.active_id))

    def wake(self) -> None:
        """Deliveries or events changed: the sender looks for due work, the relay publishes."""
        if self.sender:
            self.sender.wake()
        self._wake_relay()

    async def _record_receipts(self, batch: Sequence[tuple[str, Receipt]],
                               gate: CommitGate) -> list[ReceiptOutcome]:
        s = self.settings
        outcomes = await self.db.run(
            tracking.record_signed_receipts, self.book, batch, self.retry, self.quiet, self.clock(),
            s.email_deferral_timeout_s, 2.0 * s.receipt_tolerance_s, before_commit=gate.enter,
        )
        if ReceiptOutcome.UPDATED in outcomes:
            self.wake()  # publish the events; a fallback or resend may be due now
        return outcomes

    def _wake_relay(self) -> None:
        if self.relay:
            self.relay.wake()

    async def _start_sender(self, _runtime: ServiceRuntime) -> None:
        settings = self.settings
        self.sender = Sender(
            settings, self.db, self.book, self.sealer,
            self._email or build_email_provider(settings), self._sms or build_sms_provider(settings),
            self.clock, self.quiet, self.retry, self._wake_relay,
            dry_run=build_dry_run_providers(settings),
        )
        self.sender.start()
        self.receipts.start()

    def _make_workers(self, _runtime: ServiceRuntime) -> list[ConsumerWorker]:
        settings = self.settings
        incidents = IncidentHandler(self.db, self.book, self.quiet, self.clock, self.wake)
        self.notice_handler = NoticeHandler(
            self.db, self.book, self.quiet, self.clock, self.wake, settings.max_pending
        )
        notices_worker = ConsumerWorker(settings, DISPATCH_NOTICES.name, DISPATCH_NOTICES.topics,
                                        self.notice_handler,
                                        decode=verifying(decode_notices_topic, self.signer),
                                        dead_letters=self.dead_letters)
        self.notice_handler.worker = notices_worker
        if self.sender:
            self.sender.on_pending = self.notice_handler.update_pending
        lifecycle = LifecycleHandler(self.db, tuple(self.keks), self.vault.forget)
        followers = [TopicFollower(settings, topic, lifecycle,
                                   decode=verifying(decode_incident_lifecycle, self.signer),
                                   dead_letters=self.dead_letters)
                     for topic in (NOTICE_KEYS, INCIDENT_LIFECYCLE)]
        incidents_worker = ConsumerWorker(settings, DISPATCH_INCIDENTS.name,
                                          DISPATCH_INCIDENTS.topics, incidents,
                                          decode=verifying(decode_incident, self.signer),
                                          dead_letters=self.dead_letters)
        return [incidents_worker, notices_worker, *followers]

    async def stop(self) -> None:
        # Stop taking notices first, then finish (or abandon) sends, then the shared parts.
        for worker in self.workers:
            await worker.stop()
        self.workers = []
        if self.sender:
            await self.sender.stop()
        # After the HTTP server has drained: the receipts it still waits on are applied.
        await self.receipts.stop(self.settings.sender_stop_grace_s)
        await super().stop()

    def loops(self) -> list[SupervisedLoop]:
        return (super().loops() + (self.sender.loops if self.sender else [])
                + ([self.receipts.loop] if self.receipts.loop.task else []))


def create_app(
    settings: DispatchSettings | None = None, *, clock: Clock | None = None,
    email_provider: EmailProvider | None = None, sms_provider: SmsProvider | None = None,
) -> FastAPI:
    """`clock` (aware datetimes) lets tests run at a chosen time (quiet hours); the providers
    can be replaced for tests. By default they are built from settings."""
    settings = settings or DispatchSettings()
    # httpx logs every request URL at INFO; receipts and gateway calls would flood the log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    runtime = DispatchRuntime(settings, clock or utcnow, email_provider, sms_provider)
    return create_service_app(
        runtime,
        title="Pānui dispatch",
        description="Renders and delivers the one notice per person; tracks delivery.",
        routers=[api.router, mailout_api.router, notice_api.router, check_api.router,
                 callcentre_api.router, reconciliation_api.router],
    )
