"""The sender: a background worker beside the Kafka consumers that turns due deliveries into
messages at the gateways.

Per delivery:
  1. permits: a connection slot and a rate-limit token for its channel (flow.py), taken BEFORE
     the claim — a claimed delivery never waits for either while its lease runs;
  2. claim: due → 'sending' under this sender's lease (owner + heartbeat on the database's
     clock), committed with its event BEFORE anything is sent (tracking.claim); a new SMS
     reference is pinned to a gateway there and then;
  3. render (content/) with what the reference is pinned to (the incident revision, what the
     text says), so every attempt under one reference is the same message, and send through
     the channel's provider within `send_deadline_s`, with the reference "<notice_id>:<channel>"
     — the SMS gateway dedupes on it, the email's Message-ID is derived from it. For email the
     deadline cuts only what comes before DATA: a relay does not dedupe, so a started DATA
     runs to its answer (bounded by the SMTP command timeout, the lease kept by the heartbeat);
  4. record the answer (sent / failure with backoff / fallback) and its event in one
     transaction, as soon as the previous commit is done (tracking.record_results).
A crash between 3 and 4 leaves the row in 'sending' under a lease nobody renews; once it has
lapsed another sender (or this one restarted) sends it again with the same reference and
gateway (see docs/dispatch.md for what that does and does not guarantee). While this sender
heartbeats, nothing it has claimed is ever recovered, however slow the gateway.
A dry-run incident's notices are marked as such and go only to the local simulated gateways
(content/dry_run.py, providers/factory.py), never to the providers above.
SMS go to the gateways' bulk API in batches (sms_batch_size; _send_batch): each message keeps
its own claim, reference, pin and outcome — only the request is shared.
Over 400 lines: the claim, send and record loops share the in-flight state; split, each would
reach into the others'.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from services.common.clock import Clock
from services.common.crypto import Sealer
from services.common.db import Database
from services.common.messages import DeliveryStatus, decode_notice, notice_sealing_context
from services.common.tasks import SupervisedLoop
from services.dispatch import metrics, policy, tracking
from services.dispatch.content import dry_run
from services.dispatch.content.models import Notice
from services.dispatch.content.render import (
    RenderError,
    render_email,
    render_sms,
    uses_coordinator_templates,
)
from services.dispatch.flow import Permits
from services.dispatch.incidents import IncidentBook, IncidentEntry
from services.dispatch.policy import QuietHours, RetryPolicy
from services.dispatch.providers.base import (
    EmailMessage,
    EmailProvider,
    ProviderResult,
    SmsMessage,
    SmsProvider,
)
from services.dispatch.providers.factory import build_permits
from services.dispatch.providers.failover import FailoverSmsProvider
from services.dispatch.settings import DispatchSettings
from services.dispatch.status_lookup import StatusLookup
from services.dispatch.store import deliveries, senders
from services.dispatch.store.deliveries import Claimed
from services.dispatch.tracking import SendOutcome

log = logging.getLogger(__name__)


def new_owner(service: str) -> str:
    """This sender's name on its claims: unique per process start, no personal data."""
    return f"{service}-{socket.gethostname()[:60]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


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
        permits: Permits | None = None,
        dry_run: tuple[EmailProvider, SmsProvider] | None = None,
    ):
        self.settings = settings
        self.db = db
        self.book = book
        self.sealer = sealer
        self.wake_relay = wake_relay  # events were written: the outbox relay publishes them
        self.email = email
        self.sms = sms
        # A dry-run incident's notices go to these only (the local simulated gateways), never
        # to email/sms above; without them, such a notice is not sent at all.
        self.dry_run = dry_run
        self.clock = clock
        self.quiet = quiet
        self.retry = retry
        self.permits = permits or build_permits(settings)
        self.owner = new_owner(settings.service_name)
        self.pending = 0  # last measured, for backpressure and the gauge
        self.on_pending: Callable[[int], None] | None = None
        self._kick = asyncio.Event()  # new work, or a permit came free
        self._fresh = False  # new work: look at every channel again
        self._results: list[SendOutcome] = []
        self._results_ready = asyncio.Event()
        self._inflight: set[asyncio.Task] = set()
        self._handed_over: set[asyncio.Task] = set()  # emails whose DATA has started: never cut
        self._tasks: list[asyncio.Task] = []
        self.loops: list[SupervisedLoop] = []
        self._heartbeat: asyncio.Task | None = None
        self._stopping = False
        self._rotation = 0
        self._content: dict[int, IncidentEntry | None] = {}  # claimed delivery -> its revision
        self.housekeeping_passes = 0  # completed (as the metric); flat while the db is up: stuck
        self.lookup = StatusLookup(settings, db, book, sms, clock, quiet, retry, self._changed)
        self._lookup_loop: SupervisedLoop | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        # The heartbeat is not supervised with the others: stop() keeps it beating until the
        # answers of sends in flight are recorded, then ends it itself.
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="dispatch-heartbeat")
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
        if self.settings.status_lookup_enabled:  # the net under lost SMS receipts
            self._lookup_loop = SupervisedLoop("dispatch-status-lookup", self.lookup.run,
                                               service=self.settings.service_name,
                                               should_stop=lambda: self._stopping)
            self._lookup_loop.start()
            self.loops.append(self._lookup_loop)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; let sends in flight finish for `grace_s` and record them. Sends still
        running after that are abandoned as a crash would abandon them: their rows stay in
        'sending' and — this sender's lease given up — are sent again by the next sender, with
        the same reference. Except an email whose DATA has started: the relay may have taken
        it, and SMTP does not de-duplicate, so cut it would go out twice. It runs to its
        answer, bounded by the SMTP command timeout (DATA, then the final dot: two commands)."""
        grace = self.settings.sender_stop_grace_s if grace_s is None else grace_s
        self._stopping = True
        self.wake()
        claim, results, maintenance = self._tasks or (None, None, None)
        if self._lookup_loop and self._lookup_loop.task:  # nothing in it needs finishing
            self._lookup_loop.task.cancel()
            await asyncio.gather(self._lookup_loop.task, return_exceptions=True)
        if claim:
            await _finish(claim, 5)
        if self._inflight:
            if grace > 0:
                await asyncio.wait(set(self._inflight), timeout=grace)
            for task in list(self._inflight):  # not yet handed over: the relay has nothing
                if task not in self._handed_over:
                    task.cancel()
            if handing := [t for t in self._inflight if t in self._handed_over]:
                log.info("dispatch sender: stopping; %d emails mid-DATA run to their answer",
                         len(handing))
                _, late = await asyncio.wait(handing, timeout=2 * self.settings.smtp_timeout_s + 5)
                for task in late:  # past the protocol's own bound: the documented window
                    task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if maintenance:
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
        if results:
            self._results_ready.set()
            await _finish(results, 10)
        if self._heartbeat:  # kept up to here: the answers above were recorded under it
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            try:
                await self.db.run(senders.retire, self.owner)
            except Exception:  # the database is away: the lease lapses by itself
                log.warning("dispatch sender: could not give up its lease")
        await self.email.close()
        await self.sms.close()
        for provider in self.dry_run or ():
            await provider.close()

    @property
    def held_answers(self) -> int:
        """Gateway answers in memory, not yet recorded (the database away: they wait)."""
        return len(self._results)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    def wake(self) -> None:
        self._fresh = True
        self._kick.set()

    def _changed(self) -> None:
        """Deliveries changed outside the send path: publish, and look for due work."""
        self.wake_relay()
        self.wake()

    # ------------------------------------------------------------------ claiming
    async def _claim_loop(self) -> None:
        """Claim exactly as many deliveries per channel as can start sending now."""
        s = self.settings
        dry: dict[str, float] = {}  # channel -> until when nothing is due there (no re-poll)
        while not self._stopping:
            self._kick.clear()
            if self._fresh:
                self._fresh = False
                dry.clear()
            now = self.clock()
            mono = time.monotonic()
            channels = self._rotate(policy.sendable_channels(self.quiet, now))
            open_channels = [c for c in channels if dry.get(c, 0.0) <= mono]
            if not open_channels:
                await self._pause(min(dry.values(), default=mono + s.sender_idle_poll_s) - mono)
                continue
            taken = self.permits.take(open_channels, s.sender_batch_size)
            if not taken:
                wait = self.permits.wait_s(open_channels)
                await self._pause(s.sender_idle_poll_s if wait is None else wait)
                continue
            try:
                claimed = await self.db.run(self._claim, now, taken, self._chooser())
            except asyncio.CancelledError:
                for channel, n in taken.items():
                    self.permits.give_back(channel, n)
                raise
            except Exception:
                for channel, n in taken.items():
                    self.permits.give_back(channel, n)
                log.exception("dispatch sender: claim failed; retrying")
                await asyncio.sleep(1.0)
                continue
            got: dict[str, int] = {}
            for c in claimed:
                got[c.channel] = got.get(c.channel, 0) + 1
            for channel, n in taken.items():
                if got.get(channel, 0) < n:  # nothing more due there for now
                    self.permits.give_back(channel, n - got.get(channel, 0))
                    dry[channel] = mono + s.sender_idle_poll_s
            if claimed:
                self.wake_relay()
            batches, single = self._sms_batches(claimed)
            for batch in batches:
                self._spawn(self._send_batch(batch))
            for c in single:
                self._spawn(self._send(c))

    def _spawn(self, sending) -> None:  # noqa: ANN001 - a coroutine
        task = asyncio.create_task(sending)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _claim(self, session, now, taken, chooser):  # noqa: ANN001, ANN202
        """Claim, and in the same transaction load the incident revision each claim renders
        with: once claimed, a send needs nothing from the database (a slow or absent database
        cannot hold a claim outside the send deadline)."""
        claimed = tracking.claim(session, self.owner, self.settings.sending_lease_s, now, taken,
                                 chooser)
        for c in claimed:
            self._content[c.id] = self.book.revision(session, c.incident_id, c.content_revision)
        return claimed

    def _rotate(self, channels: list[str]) -> list[str]:
        self._rotation = (self._rotation + 1) % max(len(channels), 1)
        return channels[self._rotation:] + channels[:self._rotation]

    async def _pause(self, seconds: float) -> None:
        """Until kicked (new work, a permit free) or `seconds` have passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), max(seconds, 0.001))

    def _chooser(self) -> Callable[[], str] | None:
        return self.sms.choose if isinstance(self.sms, FailoverSmsProvider) else None

    # ------------------------------------------------------------------ sending
    async def _send(self, c: Claimed) -> None:
        try:
            outcome = await self._deliver(c)
        except Exception as exc:  # never let one notice stop the sender; no payload in logs
            log.error("dispatch sender: unexpected %s", type(exc).__name__,
                      extra={"notice_id": c.notice_id})
            outcome = SendOutcome(c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE,
                                  detail="internal-error")
        finally:
            self._content.pop(c.id, None)
            self._handed_over.discard(asyncio.current_task())
            self.permits.done(c.channel)
            self._kick.set()
        outcome.answered_at = time.monotonic()
        self._results.append(outcome)
        self._results_ready.set()

    async def _deliver(self, c: Claimed) -> SendOutcome:
        notice = decode_notice(c.notice_payload)
        entry = self._content.pop(c.id, None)  # loaded with the claim (_claim)
        if entry is None:  # cannot happen: deliveries are planned only for known incidents
            return SendOutcome(c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE,
                               detail="incident-unknown")
        sealed = self.sealer.open(notice.sealed, notice_sealing_context(notice.notice_id))
        view = Notice.from_contract(notice, sealed, updates_earlier=c.says_update)
        # Coordinator template source runs in the sandbox, in a thread (it may take up to the
        # sandbox's time bound); bundled templates are cached skeletons, cheap on the loop.
        offload = uses_coordinator_templates(view, entry.content)

        async def rendering(fn, *args, **kwargs):  # noqa: ANN001, ANN202
            return await asyncio.to_thread(fn, *args, **kwargs) if offload else fn(*args, **kwargs)

        dry = entry.message.dry_run
        moved: dict[str, str] = {}  # SMS: the gateway a failover moved it to (_repin)
        if dry and self.dry_run is None:
            return SendOutcome(c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE,
                               detail="dry-run-no-simulated-gateway")
        try:
            if c.channel == "email":
                rendered = await rendering(render_email, view, entry.content)
                email = self.email
                if dry:
                    rendered, email = dry_run.mark_email(rendered), self.dry_run[0]
                provider_name = email.name
                sending = email.send(
                    EmailMessage(
                        reference=c.reference, to=rendered.to,
                        from_addr=self.settings.email_from_address, subject=rendered.subject,
                        text=rendered.text, html=rendered.html,
                        reply_to=self.settings.email_reply_to,
                    ),
                    deadline=asyncio.get_running_loop().time() + self.settings.send_deadline_s,
                    on_handover=functools.partial(self._handed_over.add, asyncio.current_task()),
                )
            else:
                via = policy.sms_full_notice_via(
                    c.says_emailed, bool(view.addressee_address),
                    "postal" in entry.message.channel_policy.fallback,
                )
                rendered = await rendering(render_sms, view, entry.content, full_notice_via=via)
                if dry:
                    rendered, sms = dry_run.mark_sms(rendered), self.dry_run[1]
                    provider_name = sms.name
                    sending = sms.send(SmsMessage(reference=c.reference, to=rendered.to,
                                                  body=rendered.body))
                else:
                    provider_name = c.gateway or self.sms.name
                    sending = self._send_sms(c, SmsMessage(
                        reference=c.reference, to=rendered.to, body=rendered.body,
                        gateway=c.gateway, pinned=c.may_hold,
                    ), moved)
        except RenderError as exc:
            # About the template/content, never the person: safe to log. Retried on the
            # backoff schedule, so a corrected incident revision is picked up.
            log.warning("dispatch sender: render failed: %s", exc, extra={"notice_id": c.notice_id})
            return SendOutcome(c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE,
                               detail="render-error")
        started = time.perf_counter()
        try:
            # Email: the provider applies the deadline itself, up to DATA (above). SMS: the
            # whole request — a retry under the same reference is de-duplicated there.
            async with asyncio.timeout(None if c.channel == "email" else
                                       self.settings.send_deadline_s):
                result = await sending
        except TimeoutError:
            # Cut off mid-request: it may have been taken (ambiguous), same gateway next time —
            # the one it last went to, which after a failover is not the claim's.
            result = ProviderResult(None, DeliveryStatus.TECHNICAL_FAILURE,
                                    moved.get("gateway", provider_name), "deadline",
                                    ambiguous=True)
        provider = result.provider or provider_name
        metrics.SEND_SECONDS.labels(channel=c.channel, provider=provider) \
            .observe(time.perf_counter() - started)
        gateway = provider if c.channel == "sms" and self._is_gateway(provider) else None
        return SendOutcome(
            c.id, c.attempt, result.status, provider, result.provider_reference, result.detail,
            result.retry_after, result.ambiguous, gateway, channel=c.channel,
        )

    async def _send_sms(self, c: Claimed, message: SmsMessage,
                        moved: dict[str, str]) -> ProviderResult:
        if not isinstance(self.sms, FailoverSmsProvider):
            return await self.sms.send(message)
        return await self.sms.send(message, repin=self._repin(c, moved))

    def _is_gateway(self, name: str) -> bool:
        return isinstance(self.sms, FailoverSmsProvider) and name in self.sms.gateways

    # ------------------------------------------------------------------ SMS in batches
    def _sms_batches(self, claimed: list[Claimed]) -> tuple[list[list[Claimed]], list[Claimed]]:
        """SMS claims in groups for the gateways' bulk API (sms_batch_size); the rest (email,
        dry runs, no batching) one by one."""
        size = self.settings.sms_batch_size
        if size <= 1 or not isinstance(self.sms, FailoverSmsProvider):
            return [], claimed
        sms, single = [], []
        for c in claimed:
            entry = self._content.get(c.id)
            batchable = c.channel == "sms" and entry is not None and not entry.message.dry_run
            (sms if batchable else single).append(c)
        return [sms[i:i + size] for i in range(0, len(sms), size)], single

    async def _send_batch(self, claims: list[Claimed]) -> None:
        """_send for several SMS claims: rendered one by one, sent in one request per gateway,
        each answer recorded as its own outcome (same references, pins and deadline)."""
        outcomes: dict[int, SendOutcome] = {}
        try:
            ready: list[tuple[Claimed, SmsMessage]] = []
            for c in claims:
                try:
                    prepared = await self._prepare_sms(c)
                except Exception as exc:  # this notice only: its batch goes on without it
                    log.error("dispatch sender: unexpected %s", type(exc).__name__,
                              extra={"notice_id": c.notice_id})
                    prepared = SendOutcome(c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE,
                                           detail="internal-error")
                if isinstance(prepared, SendOutcome):
                    outcomes[c.id] = prepared
                else:
                    ready.append((c, prepared))
            if ready:
                for (c, _), result in zip(ready, await self._send_sms_batch(ready), strict=True):
                    outcomes[c.id] = self._sms_outcome(c, result)
        except Exception as exc:  # never let one batch stop the sender; no payload in logs
            log.error("dispatch sender: unexpected %s in an SMS batch", type(exc).__name__)
            for c in claims:
                outcomes.setdefault(c.id, SendOutcome(c.id, c.attempt,
                                                      DeliveryStatus.TECHNICAL_FAILURE,
                                                      detail="internal-error"))
        finally:
            for c in claims:
                self._content.pop(c.id, None)
                self.permits.done(c.channel)
            self._kick.set()
        answered = time.monotonic()
        for outcome in outcomes.values():
            outcome.answered_at = answered
            self._results.append(outcome)
        self._results_ready.set()

    async def _prepare_sms(self, c: Claimed) -> SmsMessage | SendOutcome:
        """The SMS under the claim's reference, rendered with what the reference is pinned to
        (as _deliver does), or the outcome when there is nothing to send."""
        notice = decode_notice(c.notice_payload)
        entry = self._content.pop(c.id, None)  # loaded with the claim (_claim)
        if entry is None:
            return SendOutcome(c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE,
                               detail="incident-unknown")
        sealed = self.sealer.open(notice.sealed, notice_sealing_context(notice.notice_id))
        view = Notice.from_contract(notice, sealed, updates_earlier=c.says_update)
        via = policy.sms_full_notice_via(c.says_emailed, bool(view.addressee_address),
                                         "postal" in entry.message.channel_policy.fallback)
        try:
            if uses_coordinator_templates(view, entry.content):  # the sandbox: off the loop
                rendered = await asyncio.to_thread(render_sms, view, entry.content,
                                                   full_notice_via=via)
            else:
                rendered = render_sms(view, entry.content, full_notice_via=via)
        except RenderError as exc:
            log.warning("dispatch sender: render failed: %s", exc, extra={"notice_id": c.notice_id})
            return SendOutcome(c.id, c.attempt, DeliveryStatus.TECHNICAL_FAILURE,
                               detail="render-error")
        return SmsMessage(reference=c.reference, to=rendered.to, body=rendered.body,
                          gateway=c.gateway, pinned=c.may_hold)

    async def _send_sms_batch(self, ready: list[tuple[Claimed, SmsMessage]]) -> list[ProviderResult]:
        """One call for the batch within `send_deadline_s`; cut off, every message in it is an
        ambiguous technical failure (it may have been taken: same gateway next time)."""
        assert isinstance(self.sms, FailoverSmsProvider)
        started = time.perf_counter()
        moved: list[dict[str, str]] = [{} for _ in ready]  # per message, as _deliver's
        try:
            async with asyncio.timeout(self.settings.send_deadline_s):
                results = await self.sms.send_batch(
                    [m for _, m in ready],
                    [self._repin(c, into) for (c, _), into in zip(ready, moved, strict=True)])
        except TimeoutError:
            # As _deliver: each at the gateway it last went to (a batch's refused messages
            # fail over one by one, so the cut often comes after some have moved).
            results = [ProviderResult(None, DeliveryStatus.TECHNICAL_FAILURE,
                                      into.get("gateway", c.gateway or self.sms.name),
                                      "deadline", ambiguous=True)
                       for (c, _), into in zip(ready, moved, strict=True)]
        elapsed = time.perf_counter() - started
        for (c, _), result in zip(ready, results, strict=True):
            metrics.SEND_SECONDS.labels(channel="sms", provider=result.provider or c.gateway
                                        or self.sms.name).observe(elapsed)
        return results

    def _sms_outcome(self, c: Claimed, result: ProviderResult) -> SendOutcome:
        provider = result.provider or c.gateway or self.sms.name
        gateway = provider if self._is_gateway(provider) else None
        return SendOutcome(
            c.id, c.attempt, result.status, provider, result.provider_reference, result.detail,
            result.retry_after, result.ambiguous, gateway, channel=c.channel,
        )

    def _repin(self, c: Claimed, moved: dict[str, str]):  # noqa: ANN202
        """The failover's `repin` for this claim: records the move, then notes it in
        `moved["gateway"]` — from then on the SMS may be at that gateway and at no other (every gateway before
        it answered "certainly not taken"), so an attempt cut off by the deadline must be
        recorded there, not at the claim's gateway: a retry there would send it again."""
        async def repin(gateway: str) -> bool:
            try:
                done = await self.db.run(tracking.repin, c.id, self.owner, c.attempt, gateway)
            except Exception:  # unrecorded: do not send where nothing says it went
                log.warning("dispatch sender: could not record a failover; not failing over")
                return False
            if done:
                moved["gateway"] = gateway
            return done
        return repin

    # ------------------------------------------------------------------ results
    async def _result_loop(self) -> None:
        """Record answers as soon as the previous commit is done (group commit): under load
        they gather into batches by themselves, and an accepted email stays unrecorded — the
        window in which a crash would send it again — for as short a time as possible."""
        flush = self.settings.result_flush_s
        while True:
            await self._results_ready.wait()
            if flush and not self._stopping:
                await asyncio.sleep(flush)  # let a bigger batch gather (a longer window)
            self._results_ready.clear()
            batch, self._results = self._results, []
            if not batch:
                if self._stopping and not self._inflight:
                    return
                continue
            try:
                await self.db.run(tracking.record_results, self.book, batch, self.retry,
                                  self.quiet, self.clock(), self.owner,
                                  self.settings.status_lookup_after_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch sender: recording %d results failed; retrying", len(batch))
                self._results = batch + self._results
                self._results_ready.set()
                await asyncio.sleep(0.5)
                continue
            recorded = time.monotonic()
            for o in batch:
                metrics.UNRECORDED_SECONDS.labels(channel=o.channel).observe(recorded - o.answered_at)
            self.wake_relay()
            if any(o.status not in (DeliveryStatus.SENT, DeliveryStatus.DELIVERED) for o in batch):
                self.wake()  # fallbacks and retries may be due now
            if self._stopping and not self._inflight and not self._results:
                return

    # ------------------------------------------------------------------ leases, housekeeping
    async def _heartbeat_loop(self) -> None:
        """Renew this sender's lease on the database's clock. While it does, nothing it claimed
        is recovered by anyone; if the database is away, the answers it holds are written when
        it is back (others wait a whole lease after coming back themselves)."""
        period = self.settings.heartbeat_s
        while True:
            try:
                await self.db.run(senders.renew, self.owner, self.settings.sending_lease_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("dispatch sender: heartbeat failed; retrying")
                await asyncio.sleep(min(period, 1.0))
                continue
            await asyncio.sleep(period)

    async def _maintenance_loop(self) -> None:
        """Claims of dead senders, emails deferred too long, notices whose incident arrived,
        the pending gauge/backpressure."""
        s = self.settings
        while True:
            try:
                now = self.clock()
                recovered = await self.db.run(tracking.expire_leases, self.owner,
                                              s.sending_lease_s, now)
                if recovered:
                    metrics.LEASES_RECOVERED.inc(recovered)
                    log.warning("dispatch sender: recovered claims of a sender presumed dead",
                                extra={"count": recovered})
                deferred = await self.db.run(tracking.expire_deferrals, self.book, self.retry,
                                             self.quiet, now)
                if recovered or deferred:
                    self.wake_relay()
                    self.wake()
                if await self.db.run(tracking.plan_waiting, self.book, self.quiet, now):
                    self.wake_relay()
                    self.wake()
                self.pending = await self.db.run(deliveries.pending_count)
                metrics.PENDING.set(self.pending)
                if self.on_pending:
                    self.on_pending(self.pending)
                self.housekeeping_passes += 1
                metrics.HOUSEKEEPING_PASSES.inc()
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
