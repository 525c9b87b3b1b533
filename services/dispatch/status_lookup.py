"""The status lookup: the net under lost SMS receipts (issue 10).

A failed SMS falls back to the next channel when its receipt says so. A receipt can be lost —
the provider gives up retrying its callback while dispatch is down, a proxy eats it — and then
the delivery stays 'sent' for ever and the person gets nothing. So an SMS still 'sent'
`status_lookup_after_s` after its gateway took it (no receipt settled it) is asked about at
that gateway (SmsProvider.status: the provider's message-status API, its answers read through
the client's LOOKUP_ANSWERS and STATUS_MAP), and asked again every `status_lookup_interval_s`
while the answer is not final, until `status_lookup_max_age_s` after its first attempt.

A final answer goes through the same path as a receipt saying it (tracking.record_lookup →
record_receipt, one transaction): a permanent failure queues the fallback once, a delivery
already final is left alone, a receipt arriving later is a duplicate. Nothing is ever sent
again from here, and no answer but a final status changes anything (not found, no answer,
still on its way: asked again later, counted).

Bounded work: at most `status_lookup_batch` deliveries per pass, one pass every
`status_lookup_period_s`; each taken with SKIP LOCKED and stamped with its next time in the
same transaction, so replicas share the work and never ask twice at once. Lookups take the
gateway's connection slots as sends do. Email is never looked up: SMTP has nothing to ask
(docs/decisions.md). Metrics carry gateway names and outcomes only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from services.common.clock import Clock
from services.common.db import Database
from services.dispatch import delivery_state, metrics, tracking
from services.dispatch.incidents import IncidentBook
from services.dispatch.policy import QuietHours, RetryPolicy
from services.dispatch.providers.base import Lookup, SmsProvider, StatusAnswer
from services.dispatch.providers.failover import FailoverSmsProvider
from services.dispatch.settings import DispatchSettings
from services.dispatch.store import deliveries
from services.dispatch.store.deliveries import LookupDue

log = logging.getLogger(__name__)


class StatusLookup:
    def __init__(
        self,
        settings: DispatchSettings,
        db: Database,
        book: IncidentBook,
        sms: SmsProvider,
        clock: Clock,
        quiet: QuietHours | None,
        retry: RetryPolicy,
        on_change: Callable[[], None],
    ):
        self.settings = settings
        self.db = db
        self.book = book
        self.sms = sms
        self.clock = clock
        self.quiet = quiet
        self.retry = retry
        self.on_change = on_change  # deliveries changed: events to publish, fallbacks due
        self.passes = 0

    @property
    def providers(self) -> list[str]:
        """The gateways whose SMS are asked about (never the dry-run gateway's: a rehearsal
        ends at 'sent')."""
        return self.sms.gateways if isinstance(self.sms, FailoverSmsProvider) else [self.sms.name]

    def _gateway(self, name: str) -> SmsProvider | None:
        if isinstance(self.sms, FailoverSmsProvider):
            return self.sms.gateway(name)
        return self.sms if self.sms.name == name else None

    async def run(self) -> None:
        """Passes for ever (a supervised loop's body)."""
        while True:
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch status lookup: pass failed")
            await asyncio.sleep(self.settings.status_lookup_period_s)

    async def run_pass(self) -> Counter[str]:
        """One pass: take the SMS due to be asked about, ask, apply the final answers.
        Returns how many came to each outcome (as the metric counts them)."""
        s = self.settings
        providers = self.providers
        due = await self.db.run(
            tracking.take_status_lookups,
            providers,
            self.clock(),
            s.status_lookup_batch,
            s.status_lookup_interval_s,
            s.status_lookup_max_age_s,
        )
        answers = await asyncio.gather(*(self._ask(d) for d in due))
        outcomes: Counter[str] = Counter()
        for d, answer in zip(due, answers, strict=True):
            outcome = await self._apply(d, answer)
            outcomes[outcome] += 1
            metrics.STATUS_LOOKUPS.labels(provider=d.provider, outcome=outcome).inc()
        if outcomes[delivery_state.ReceiptOutcome.UPDATED.value]:
            self.on_change()
        oldest = self.clock().timestamp() - s.status_lookup_max_age_s
        metrics.SMS_UNCONFIRMED.set(await self.db.run(deliveries.count_unconfirmed_sms, providers, oldest))
        if due:
            log.info(
                "dispatch status lookup: asked about %d SMS still sent",
                len(due),
                extra={"outcomes": dict(outcomes)},
            )
        self.passes += 1
        metrics.STATUS_LOOKUP_PASSES.inc()
        return outcomes

    async def _ask(self, due: LookupDue) -> StatusAnswer:
        gateway = self._gateway(due.provider)
        if gateway is None:  # taken by a gateway no longer configured
            return StatusAnswer(Lookup.UNANSWERED, "gateway-not-configured")
        try:
            async with asyncio.timeout(self.settings.send_deadline_s):
                return await gateway.status(due.provider_reference)
        except TimeoutError:
            return StatusAnswer(Lookup.UNANSWERED, "deadline")
        except Exception as exc:  # one lookup never stops the pass; no payload in logs
            log.error(
                "dispatch status lookup: unexpected %s",
                type(exc).__name__,
                extra={"notice_id": due.notice_id},
            )
            return StatusAnswer(Lookup.UNANSWERED, "internal-error")

    async def _apply(self, due: LookupDue, answer: StatusAnswer) -> str:
        if answer.lookup is not Lookup.STATUS:
            if answer.lookup is Lookup.NOT_FOUND:
                # The gateway took it (its own answer said so) and now does not know it.
                log.warning(
                    "dispatch status lookup: the gateway does not know a message it took",
                    extra={"notice_id": due.notice_id, "provider": due.provider},
                )
            return answer.lookup.value
        if answer.reference is not None and answer.reference != due.reference:
            log.warning(
                "dispatch status lookup: the gateway's message has another reference",
                extra={"notice_id": due.notice_id, "provider": due.provider},
            )
            return "mismatch"
        assert answer.status is not None  # noqa: S101 - Lookup.STATUS carries one
        if not delivery_state.lookup_settles(answer.status):
            return "pending"
        try:
            outcome = await self.db.run(
                tracking.record_lookup,
                self.book,
                due,
                answer,
                self.retry,
                self.quiet,
                self.clock(),
                self.settings.email_deferral_timeout_s,
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # asked again after the interval (its time was stamped)
            log.exception("dispatch status lookup: recording an answer failed")
            return "error"
        return outcome.value
