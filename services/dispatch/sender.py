"""The sender: a background worker beside the Kafka consumers that turns due deliveries into
messages at the gateways.

Per delivery:
  1. claim: queued/temporary-failure/technical-failure → 'sending', committed with its event
     BEFORE anything is sent (store.claim_due, a batch per round trip);
  2. render (content/) and send through the channel's provider with the reference
     "<notice_id>:<channel>" — the SMS gateway dedupes on it, the email's Message-ID is derived
     from it;
  3. record the answer (sent / failure with backoff / fallback) and its event in one
     transaction, batched with other answers (store.apply_results).
A crash between 2 and 3 leaves the row in 'sending'; when its lease expires it is retried with
the same reference (see docs/dispatch.md for what that does and does not guarantee).

Flow control: at most `sender_concurrency` sends in flight, a token bucket per gateway, and the
notice consumer pauses while too many deliveries are pending (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import httpx

from services.common.crypto import Sealer
from services.common.db import run_db
from services.common.messages import decode_notice, notice_sealing_context
from services.common.ratelimit import TokenBucket
from services.dispatch import metrics, store
from services.dispatch.content.models import Notice
from services.dispatch.content.render import RenderError, render_email, render_sms
from services.dispatch.delivery_state import DeliveryStatus
from services.dispatch.policy import QuietHours, RetryPolicy
from services.dispatch.providers.base import (
    EmailMessage,
    EmailProvider,
    ProviderResult,
    SmsMessage,
    SmsProvider,
)
from services.dispatch.providers.failover import FailoverSmsProvider
from services.dispatch.providers.sms_http import HttpSmsProvider
from services.dispatch.providers.smtp import SmtpConfig, SmtpEmailProvider
from services.dispatch.settings import DispatchSettings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


# ------------------------------------------------------------------------- gateway wrappers


class RateLimitedEmail(EmailProvider):
    """An email provider behind a token bucket (one per gateway)."""

    def __init__(self, inner: EmailProvider, bucket: TokenBucket | None):
        self.inner, self.bucket = inner, bucket
        self.name = inner.name
        self.STATUS_MAP = inner.STATUS_MAP

    async def send(self, message: EmailMessage) -> ProviderResult:
        if self.bucket:
            await self.bucket.acquire()
        return await self.inner.send(message)

    async def close(self) -> None:
        await self.inner.close()


class GatewaySms(SmsProvider):
    """One SMS gateway: its token bucket, and the receipt callback address naming it."""

    def __init__(self, inner: SmsProvider, bucket: TokenBucket | None, callback_base: str):
        self.inner, self.bucket = inner, bucket
        self.name = inner.name
        self.STATUS_MAP = inner.STATUS_MAP
        self.callback_url = f"{callback_base.rstrip('/')}/v1/receipts/{inner.name}" if callback_base else None

    async def send(self, message: SmsMessage) -> ProviderResult:
        if self.bucket:
            await self.bucket.acquire()
        return await self.inner.send(replace(message, callback_url=self.callback_url))

    async def close(self) -> None:
        await self.inner.close()


def _bucket(rate: float, burst: int) -> TokenBucket | None:
    return TokenBucket(rate=rate, burst=max(burst, 1)) if rate > 0 else None


def build_email_provider(settings: DispatchSettings) -> EmailProvider:
    config = SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        tls=settings.smtp_tls,  # type: ignore[arg-type]
        validate_certs=settings.smtp_validate_certs,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        timeout=settings.smtp_timeout_s,
        pool_size=settings.smtp_pool_size,
        message_id_domain=settings.message_id_domain,
    )
    return RateLimitedEmail(
        SmtpEmailProvider(config), _bucket(settings.email_rate_per_s, settings.email_burst)
    )


def build_sms_provider(settings: DispatchSettings) -> FailoverSmsProvider:
    gateways: list[tuple[SmsProvider, int]] = []
    for name, url, key, weight in (
        ("sms-primary", settings.sms_primary_url, settings.sms_primary_api_key,
         settings.sms_primary_weight),
        ("sms-secondary", settings.sms_secondary_url, settings.sms_secondary_api_key,
         settings.sms_secondary_weight),
    ):
        if not url:
            continue
        client = httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {key.get_secret_value()}"} if key else {},
            timeout=httpx.Timeout(settings.sms_timeout_s),
            limits=httpx.Limits(
                max_connections=settings.sms_http_connections,
                max_keepalive_connections=settings.sms_http_connections,
            ),
        )
        inner = _OwningHttpSms(url, name=name, client=client,
                               connections=settings.sms_http_connections,
                               pool_timeout=settings.sms_timeout_s)
        gateway = GatewaySms(
            inner, _bucket(settings.sms_rate_per_s, settings.sms_burst),
            settings.receipt_callback_base_url,
        )
        gateways.append((gateway, weight))
    return FailoverSmsProvider(gateways, cooldown=settings.sms_failover_cooldown_s)


class _OwningHttpSms(HttpSmsProvider):
    """HttpSmsProvider with a client we configured (pool limits) and that it closes.

    Requests wait for a connection HERE, not in httpcore's pool: httpcore re-scans every
    queued request against every connection (and polls each idle socket) whenever a request
    starts or ends, which with hundreds of sends in flight cost several ms of CPU per SMS.
    The wait is bounded like httpx's pool timeout and ends the same way (PoolTimeout →
    connect-error: the request never reached the provider, so failover is safe)."""

    def __init__(self, base_url: str, *, name: str, client: httpx.AsyncClient,
                 connections: int = 20, pool_timeout: float | None = None):
        super().__init__(base_url, name=name, client=client)
        self._owns_client = True
        self._gate = asyncio.Semaphore(max(connections, 1))
        self._pool_timeout = pool_timeout

    async def send(self, message: SmsMessage) -> ProviderResult:
        gate = self._gate
        if gate.locked():
            try:
                async with asyncio.timeout(self._pool_timeout):
                    await gate.acquire()
            except TimeoutError:
                return ProviderResult(None, DeliveryStatus.TECHNICAL_FAILURE, self.name,
                                      "connect-error")
        else:
            await gate.acquire()  # free: returns at once
        try:
            return await super().send(message)
        finally:
            gate.release()


# ------------------------------------------------------------------------------- the sender


class Sender:
    def __init__(
        self,
        settings: DispatchSettings,
        engine,  # noqa: ANN001
        book: store.IncidentBook,
        sealer: Sealer,
        relay,  # noqa: ANN001
        email: EmailProvider,
        sms: SmsProvider,
        clock: Clock,
        quiet: QuietHours | None,
        retry: RetryPolicy,
    ):
        self.settings = settings
        self.engine = engine
        self.book = book
        self.sealer = sealer
        self.relay = relay
        self.email = email
        self.sms = sms
        self.clock = clock
        self.quiet = quiet
        self.retry = retry
        self.pending = 0  # last measured, for backpressure and the gauge
        self.on_pending: Callable[[int], None] | None = None
        self._wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._results: list[store.SendOutcome] = []
        self._results_ready = asyncio.Event()
        self._inflight: set[asyncio.Task] = set()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="dispatch-sender"),
            asyncio.create_task(self._result_loop(), name="dispatch-results"),
            asyncio.create_task(self._maintenance_loop(), name="dispatch-maintenance"),
        ]

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; let sends in flight finish for `grace_s` and record them. Sends still
        running after that are abandoned as a crash would abandon them: their rows stay in
        'sending' and are retried with the same reference when the lease expires."""
        grace = self.settings.sender_stop_grace_s if grace_s is None else grace_s
        self._stopping = True
        self._wake.set()
        self._slot.set()
        claim, results, maintenance = self._tasks or (None, None, None)
        if claim:
            await _finish(claim, 5)
        if self._inflight:
            if grace > 0:
                await asyncio.wait(set(self._inflight), timeout=grace)
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if maintenance:
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
        if results:
            self._results_ready.set()
            await _finish(results, 10)
        await self.email.close()
        await self.sms.close()

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ claiming
    def _channels(self, now: datetime) -> list[str]:
        if self.quiet is not None and self.quiet.is_quiet(now):
            return ["email"]  # SMS waits for morning
        return ["email", "sms"]

    async def _claim_loop(self) -> None:
        s = self.settings
        while not self._stopping:
            free = s.sender_concurrency - len(self._inflight)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            now = self.clock()
            limit = min(s.sender_batch_size, free)
            try:
                claimed = await run_db(
                    store.claim_due, self.engine, now, s.sending_lease_s, limit, self._channels(now)
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch sender: claim failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if claimed:
                self.relay.wake()
            for c in claimed:
                task = asyncio.create_task(self._send(c))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if len(claimed) < limit:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), s.sender_idle_poll_s)

    def _done(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        self._slot.set()

    # ------------------------------------------------------------------ sending
    async def _send(self, c: store.Claimed) -> None:
        try:
            outcome = await self._deliver(c)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let one notice stop the sender; no payload in logs
            log.error("dispatch sender: unexpected %s", type(exc).__name__,
                      extra={"notice_id": c.notice_id})
            outcome = store.SendOutcome(
                c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE, detail="internal-error"
            )
        self._results.append(outcome)
        self._results_ready.set()

    async def _deliver(self, c: store.Claimed) -> store.SendOutcome:
        notice = decode_notice(c.notice_payload)
        entry = self.book.cached(notice.incident_id) or await run_db(
            self.book.get, notice.incident_id
        )
        if entry is None:  # cannot happen: deliveries are planned only for known incidents
            return store.SendOutcome(c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE,
                                     detail="incident-unknown")
        sealed = self.sealer.open(notice.sealed, notice_sealing_context(notice.notice_id))
        view = Notice.from_contract(notice, sealed)
        started = time.perf_counter()
        try:
            if c.channel == "email":
                rendered = render_email(view, entry.content)
                provider = self.email
                result = await self.email.send(
                    EmailMessage(
                        reference=c.reference, to=rendered.to,
                        from_addr=self.settings.email_from_address, subject=rendered.subject,
                        text=rendered.text, html=rendered.html,
                        reply_to=self.settings.email_reply_to,
                    )
                )
            else:
                postal_allowed = "postal" in entry.message.channel_policy.fallback
                via = (
                    "email" if c.email_active
                    else "postal" if view.addressee_address and postal_allowed
                    else "none"
                )
                rendered = render_sms(view, entry.content, full_notice_via=via)
                provider = self.sms
                result = await self.sms.send(
                    SmsMessage(reference=c.reference, to=rendered.to, body=rendered.body)
                )
        except RenderError as exc:
            # About the template/content, never the person: safe to log. Retried on the
            # backoff schedule, so a corrected incident revision is picked up.
            log.warning("dispatch sender: render failed: %s", exc, extra={"notice_id": c.notice_id})
            return store.SendOutcome(c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE,
                                     detail="render-error")
        metrics.SEND_SECONDS.labels(channel=c.channel, provider=result.provider or provider.name) \
            .observe(time.perf_counter() - started)
        return store.SendOutcome(
            c.id, c.attempt, result.status, result.provider or provider.name,
            result.provider_reference, result.detail, result.retry_after,
        )

    # ------------------------------------------------------------------ results
    async def _result_loop(self) -> None:
        while True:
            await self._results_ready.wait()
            if not self._stopping:
                await asyncio.sleep(self.settings.result_flush_s)  # let a batch gather
            self._results_ready.clear()
            batch, self._results = self._results, []
            if not batch:
                if self._stopping and not self._inflight:
                    return
                continue
            try:
                await run_db(
                    store.apply_results, self.engine, self.book, batch, self.retry, self.quiet,
                    self.clock(),
                )
                self.relay.wake()
                self._wake.set()  # fallbacks and retries may be due now
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch sender: recording %d results failed; retrying", len(batch))
                self._results = batch + self._results
                self._results_ready.set()
                await asyncio.sleep(1.0)
            if self._stopping and not self._inflight and not self._results:
                return

    # ------------------------------------------------------------------ housekeeping
    async def _maintenance_loop(self) -> None:
        """Expired leases, notices whose incident arrived, the pending gauge/backpressure."""
        while True:
            try:
                now = self.clock()
                if await run_db(store.expire_leases, self.engine, now):
                    self.relay.wake()
                    self._wake.set()
                if await run_db(store.plan_waiting, self.engine, self.book, self.quiet, now):
                    self.relay.wake()
                    self._wake.set()
                self.pending = await run_db(store.pending_count, self.engine)
                metrics.PENDING.set(self.pending)
                if self.on_pending:
                    self.on_pending(self.pending)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch sender: housekeeping failed")
            await asyncio.sleep(0.5)


async def _finish(task: asyncio.Task, timeout: float) -> None:  # noqa: ASYNC109 - internal helper
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
