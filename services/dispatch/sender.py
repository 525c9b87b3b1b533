"""The sender: a background worker beside the Kafka consumers that turns due deliveries into
messages at the gateways.

Per delivery:
  1. claim: queued/temporary-failure/technical-failure → 'sending', committed with its event
     BEFORE anything is sent (store.deliveries.claim_due, a batch per round trip);
  2. render (content/) and send through the channel's provider with the reference
     "<notice_id>:<channel>" — the SMS gateway dedupes on it, the email's Message-ID is derived
     from it;
  3. record the answer (sent / failure with backoff / fallback) and its event in one
     transaction, batched with other answers (tracking.record_results).
A crash between 2 and 3 leaves the row in 'sending'; when its lease expires it is retried with
the same reference (see docs/dispatch.md for what that does and does not guarantee).

Flow control: at most `sender_concurrency` sends in flight, a token bucket per gateway (in the
providers, see providers/factory.py), and the notice consumer pauses while too many deliveries
are pending (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from services.common.clock import Clock
from services.common.crypto import Sealer
from services.common.db import Database
from services.common.messages import DeliveryStatus, decode_notice, notice_sealing_context
from services.common.tasks import SupervisedLoop
from services.dispatch import metrics, policy, tracking
from services.dispatch.content.models import Notice
from services.dispatch.content.render import (
    RenderError,
    render_email,
    render_sms,
    uses_coordinator_templates,
)
from services.dispatch.incidents import IncidentBook
from services.dispatch.policy import QuietHours, RetryPolicy
from services.dispatch.providers.base import EmailMessage, EmailProvider, SmsMessage, SmsProvider
from services.dispatch.settings import DispatchSettings
from services.dispatch.store import deliveries
from services.dispatch.store.deliveries import Claimed
from services.dispatch.tracking import SendOutcome

log = logging.getLogger(__name__)


class Sender:
    def __init__(
        self,
        settings: DispatchSettings,
        db: Database,
        book: IncidentBook,
        sealer: Sealer,
        email: EmailProvider,
        sms: SmsProvider,
        clock: Clock,
        quiet: QuietHours | None,
        retry: RetryPolicy,
        wake_relay: Callable[[], None],
    ):
        self.settings = settings
        self.db = db
        self.book = book
        self.sealer = sealer
        self.wake_relay = wake_relay  # events were written: the outbox relay publishes them
        self.email = email
        self.sms = sms
        self.clock = clock
        self.quiet = quiet
        self.retry = retry
        self.pending = 0  # last measured, for backpressure and the gauge
        self.on_pending: Callable[[int], None] | None = None
        self._wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._results: list[SendOutcome] = []
        self._results_ready = asyncio.Event()
        self._inflight: set[asyncio.Task] = set()
        self._tasks: list[asyncio.Task] = []
        self.loops: list[SupervisedLoop] = []
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        # Supervised (services/common/tasks.py): a loop that crashes is restarted; one that
        # cannot be fails the liveness probe.
        self.loops = [
            SupervisedLoop(name, body, service=self.settings.service_name,
                           should_stop=lambda: self._stopping)
            for name, body in (("dispatch-sender", self._claim_loop),
                               ("dispatch-results", self._result_loop),
                               ("dispatch-maintenance", self._maintenance_loop))
        ]
        for loop in self.loops:
            loop.start()
        self._tasks = [loop.task for loop in self.loops]

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
                claimed = await self.db.run(
                    deliveries.claim_due, now, s.sending_lease_s, limit,
                    policy.sendable_channels(self.quiet, now),
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch sender: claim failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if claimed:
                self.wake_relay()
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
    async def _send(self, c: Claimed) -> None:
        try:
            outcome = await self._deliver(c)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let one notice stop the sender; no payload in logs
            log.error("dispatch sender: unexpected %s", type(exc).__name__,
                      extra={"notice_id": c.notice_id})
            outcome = SendOutcome(c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE,
                                  detail="internal-error")
        self._results.append(outcome)
        self._results_ready.set()

    async def _deliver(self, c: Claimed) -> SendOutcome:
        notice = decode_notice(c.notice_payload)
        entry = self.book.cached(notice.incident_id) or await self.db.run(
            self.book.get, notice.incident_id
        )
        if entry is None:  # cannot happen: deliveries are planned only for known incidents
            return SendOutcome(c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE,
                               detail="incident-unknown")
        sealed = self.sealer.open(notice.sealed, notice_sealing_context(notice.notice_id))
        view = Notice.from_contract(notice, sealed)
        started = time.perf_counter()
        # Coordinator template source runs in the sandbox, in a thread (it may take up to the
        # sandbox's time bound); bundled templates are cached skeletons, cheap on the loop.
        offload = uses_coordinator_templates(view, entry.content)

        async def rendering(fn, *args, **kwargs):  # noqa: ANN001, ANN202
            return await asyncio.to_thread(fn, *args, **kwargs) if offload else fn(*args, **kwargs)

        try:
            if c.channel == "email":
                rendered = await rendering(render_email, view, entry.content)
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
                via = policy.sms_full_notice_via(
                    c.email_active, bool(view.addressee_address),
                    "postal" in entry.message.channel_policy.fallback,
                )
                rendered = await rendering(render_sms, view, entry.content, full_notice_via=via)
                provider = self.sms
                result = await self.sms.send(
                    SmsMessage(reference=c.reference, to=rendered.to, body=rendered.body)
                )
        except RenderError as exc:
            # About the template/content, never the person: safe to log. Retried on the
            # backoff schedule, so a corrected incident revision is picked up.
            log.warning("dispatch sender: render failed: %s", exc, extra={"notice_id": c.notice_id})
            return SendOutcome(c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE,
                               detail="render-error")
        metrics.SEND_SECONDS.labels(channel=c.channel, provider=result.provider or provider.name) \
            .observe(time.perf_counter() - started)
        return SendOutcome(
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
                await self.db.run(
                    tracking.record_results, self.book, batch, self.retry, self.quiet, self.clock()
                )
                self.wake_relay()
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
                if await self.db.run(deliveries.expire_leases, now):
                    self.wake_relay()
                    self._wake.set()
                if await self.db.run(tracking.plan_waiting, self.book, self.quiet, now):
                    self.wake_relay()
                    self._wake.set()
                self.pending = await self.db.run(deliveries.pending_count)
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
