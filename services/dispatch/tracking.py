"""Delivery tracking: the units of work that change deliveries. Each function runs in ONE
transaction (`await db.run(fn, *args)`): it reads through the store, decides with the rules
(delivery_state.py, policy.py) and writes through the store, so every change and its event are
committed together. No SQL here, and no rule either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from services.common import metrics as common_metrics
from services.common import retention
from services.common.messages import (
    DeliveryStatus,
    NoticeHoldMessage,
    NoticeMessage,
    decode_notice,
)
from services.common.topics import NOTICES
from services.dispatch import delivery_state, policy
from services.dispatch.delivery_state import ReceiptOutcome
from services.dispatch.incidents import IncidentBook
from services.dispatch.policy import QuietHours, RetryPolicy
from services.dispatch.providers.base import StatusAnswer
from services.dispatch.providers.receipts import Receipt
from services.dispatch.store import deliveries, notices, senders
from services.dispatch.store import holds as holds_store
from services.dispatch.store import receipts as receipt_nonces
from services.dispatch.store.deliveries import KEEP, Change, Claimed, NewDelivery

S = DeliveryStatus
log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ planning


def record_notices(
    session: Session, book: IncidentBook, received: Sequence[tuple[NoticeMessage, bytes]],
    quiet: QuietHours | None, now: datetime,
) -> int:
    """Store notices (idempotently) and queue the deliveries of those whose incident is known.
    A notice whose incident has not arrived yet is kept, unplanned, and planned when it does.
    Returns the number of new notices."""
    unique: dict[str, tuple[NoticeMessage, bytes]] = {}
    # Held against their purge until this commits; a purged incident's notices are dropped.
    purged = retention.hold(session, {n.incident_id for n, _ in received})
    for notice, raw in received:
        if notice.incident_id in purged:
            common_metrics.PURGED_DROPPED.labels(service="dispatch", topic=NOTICES.name).inc()
            continue
        unique.setdefault(notice.notice_id, (notice, raw))
    if not unique:
        return 0
    known = {i: book.get(session, i) is not None for i in {n.incident_id for n, _ in unique.values()}}
    inserted = notices.insert_notices(
        session, [notices.NewNotice(n, raw, known[n.incident_id]) for n, raw in unique.values()], now
    )
    # In arrival order (not the set's), so delivery events follow the notices' order.
    plannable = [n for n, _ in unique.values() if n.notice_id in inserted and known[n.incident_id]]
    _plan(session, plannable, book, quiet, now)
    return len(inserted)


def record_holds(session: Session, holds: Sequence[NoticeHoldMessage]) -> None:
    """Whether notified persons are held under s 116 now (for the call centre); nothing is
    kept of a purged incident."""
    purged = retention.hold(session, {h.incident_id for h in holds})
    holds_store.record_holds(session, [h for h in holds if h.incident_id not in purged])


def plan_waiting(
    session: Session, book: IncidentBook, quiet: QuietHours | None, now: datetime,
    incident_id: str | None = None, limit: int = 2000,
) -> int:
    """Plan up to `limit` notices that arrived before their incident; returns how many."""
    ready = [i for i in notices.incidents_awaited(session, incident_id) if book.get(session, i)]
    claimed = notices.claim_unplanned(session, ready, limit)
    _plan(session, claimed, book, quiet, now)
    return len(claimed)


def _new_delivery(notice: NoticeMessage, channel: str, quiet: QuietHours | None,
                  now: datetime) -> NewDelivery:
    status = delivery_state.initial_status(channel)
    due = 0.0 if status is S.UNREACHABLE else policy.first_attempt_at(channel, quiet, now).timestamp()
    # A correction with nothing to say to a person no earlier version reached is looked at
    # again before it is sent (drop_unneeded_corrections): what was on its way may bounce.
    only_if_told = notice.correction is not None and not policy.correction_has_anything_to_say(
        notice.correction.kind, earlier_told=False)
    return NewDelivery(
        notice.notice_id, notice.incident_id, notice.person_id, notice.version, channel,
        status.value, delivery_state.reference_for(notice.notice_id, channel), due, only_if_told,
    )


def _plan(session: Session, planned: Sequence[NoticeMessage], book: IncidentBook,
          quiet: QuietHours | None, now: datetime) -> None:
    new: list[NewDelivery] = []
    unneeded: list[NewDelivery] = []
    for notice in planned:
        entry = book.get(session, notice.incident_id)
        assert entry is not None  # planned only once the incident is known
        planned_here = [_new_delivery(notice, c, quiet, now)
                        for c in policy.first_channels(notice.channels, entry.policy)]
        if notice.correction is not None and not _correction_due(session, notice, now):
            # The notice it corrects never went out: kept, not sent (no "none" row: that
            # would count the person unreachable again).
            unneeded += [d for d in planned_here if d.channel != "none"]
        else:
            new += planned_here
    deliveries.insert_deliveries(session, new, now)
    deliveries.insert_not_needed(session, unneeded, now)
    # An amendment replaces the person's unsent older version (quiet hours held it, say), and
    # an older version arriving after a newer one is never sent.
    deliveries.supersede_older(session, {n.person_id for n in planned}, now)


def _correction_due(session: Session, notice: NoticeMessage, now: datetime) -> bool:
    """A correction notice corrects what its person was sent: their earlier versions still
    unsent are superseded first (they are what it corrects), then whether any went out decides
    (policy.correction_has_anything_to_say)."""
    assert notice.correction is not None  # noqa: S101 - the caller checks
    deliveries.supersede_earlier(session, notice.incident_id, notice.person_id, notice.version, now)
    told = deliveries.earlier_told(session, notice.incident_id, notice.person_id, notice.version)
    if policy.correction_has_anything_to_say(notice.correction.kind, told):
        return True
    log.info("correction notice not sent: the notice it corrects was never sent", extra={
        "incident_id": notice.incident_id, "notice_id": notice.notice_id,
        "correction": notice.correction.kind})
    return False


def _fall_back(session: Session, book: IncidentBook, notice_ids: Iterable[str],
               quiet: QuietHours | None, now: datetime) -> None:
    """After permanent failures: queue each notice's next channel (policy.fallback_channel).
    The notices are locked first, so when two channels of one notice fail at once in two
    transactions ("both" mode: an email bounce and an SMS receipt), the second to decide sees
    the first's failure and queues the fallback — neither can miss the other."""
    ids = sorted(set(notice_ids))
    notices.lock_notices(session, ids)
    current = deliveries.statuses_by_notice(session, ids)
    payloads = notices.notice_payloads(session, ids)
    new: list[NewDelivery] = []
    for notice_id in ids:
        notice = decode_notice(payloads[notice_id])
        entry = book.get(session, notice.incident_id)
        channel = policy.fallback_channel(
            notice.channels, entry.policy if entry else None, current.get(notice_id, {})
        )
        if channel is not None and channel not in current.get(notice_id, {}):
            new.append(_new_delivery(notice, channel, quiet, now))
    deliveries.insert_deliveries(session, new, now, reason_code="fallback")
    deliveries.supersede_older(session, {d.person_id for d in new}, now)


# ------------------------------------------------------------------------------ claiming


def claim(
    session: Session, owner: str, lease_s: float, now: datetime, limits: Mapping[str, int],
    choose_gateway: Callable[[], str] | None = None,
) -> list[Claimed]:
    """Renew `owner`'s lease and claim up to `limits[channel]` due deliveries (one transaction,
    committed before anything is sent). A new SMS reference is pinned to the gateway
    `choose_gateway()` picks, so even a crash right after the send retries there."""
    senders.renew(session, owner, lease_s)
    if any(n > 0 for n in limits.values()):  # and letters not batched yet (mailouts.py)
        drop_unneeded_corrections(session, now, [*(c for c, n in limits.items() if n > 0),
                                                 "postal"])
    claimed = deliveries.claim_due(session, owner, now, lease_s, limits)
    if choose_gateway is not None:
        chosen: dict[str, list[int]] = {}
        for c in claimed:
            if c.channel == "sms" and c.gateway is None:
                c.gateway = choose_gateway()
                chosen.setdefault(c.gateway, []).append(c.id)
        deliveries.pin_gateways(session, chosen)
    return claimed


def drop_unneeded_corrections(session: Session, now: datetime, channels: Sequence[str]) -> int:
    """Before a sent-in-error correction is sent, look again at what its person got: planned
    while an earlier version was on its way, that version may since have bounced or failed for
    good. When no earlier version reached them, the correction is not sent: its due deliveries
    become 'not-needed' (stored, logged, counted; the call centre sees them) — nobody is told
    "we sent you a notice in error" about a notice they never received. Which deliveries are
    such corrections was decided when they were planned (`_new_delivery`), so this is one
    statement on the few due ones, whatever else is due. Returns how many."""
    dropped = deliveries.settle_unneeded_corrections(session, now, channels)
    for d in dropped:
        log.info("correction notice not sent: no earlier version reached the person", extra={
            "incident_id": d.incident_id, "notice_id": d.notice_id, "channel": d.channel})
    return len(dropped)


def expire_leases(session: Session, owner: str, lease_s: float, now: datetime) -> int:
    """Recover the claims of senders presumed dead (store/deliveries.expire_leases); a
    recovered delivery whose person has a newer notice is superseded instead of resent."""
    recovered = deliveries.expire_leases(session, owner, lease_s, now)
    deliveries.supersede_older(session, {r.person_id for r in recovered}, now)
    return len(recovered)


# ------------------------------------------------------------------------------ send results


@dataclass(slots=True)
class SendOutcome:
    """What a gateway answered for one claimed delivery (or why nothing was sent)."""

    delivery_id: int
    attempt: int
    status: DeliveryStatus
    provider: str | None = None
    provider_reference: str | None = None
    detail: str | None = None
    retry_after: float | None = None
    ambiguous: bool = False  # it may have been taken: keep the reference where it went
    gateway: str | None = None  # SMS: the gateway that answered
    channel: str = ""
    answered_at: float = 0.0  # monotonic; how long the answer waited to be recorded


def record_results(
    session: Session, book: IncidentBook, outcomes: Sequence[SendOutcome], retry: RetryPolicy,
    quiet: QuietHours | None, now: datetime, owner: str | None = None,
    lookup_after_s: float = policy.STATUS_LOOKUP_AFTER_S,
) -> int:
    """Record what the gateways answered, a batch at a time: accepted, failed for good (then
    fall back), or failed for now (back off, or give up when the retry budget is spent). An
    outcome whose delivery has moved on — or whose claim `owner` no longer holds — is dropped.
    An accepted SMS is due for a status lookup `lookup_after_s` on, unless a receipt settles it
    first. Returns the number recorded."""
    if not outcomes:
        return 0
    rows = deliveries.lock_deliveries(session, [o.delivery_id for o in outcomes])
    changes: list[Change] = []
    for o in outcomes:
        row = rows.get(o.delivery_id)
        if row is None or not delivery_state.outcome_is_current(
            row.status, row.attempts, o.attempt, row.lease_owner, owner
        ):
            continue
        change = Change(row, o.status.value, o.provider, o.detail)
        held = delivery_state.may_hold_after(row.may_hold, o.status, o.ambiguous)
        change.may_hold = held
        if not held:
            change.unpin = True  # nothing anywhere: next attempt chooses afresh
        elif o.gateway is not None and not row.may_hold:
            change.gateway = o.gateway
        if o.status in delivery_state.ACCEPTED_STATES:
            change.provider_reference = (o.provider_reference or "")[:200] or None
            change.next_attempt_at = policy.status_lookup_at(row.channel, o.status, now,
                                                             lookup_after_s)
        elif o.status is not S.PERMANENT_FAILURE:  # temporary or technical
            decision = policy.retry_or_give_up(
                retry, o.status, row.attempts, row.first_attempt_at, now, o.retry_after
            )
            change.status, change.next_attempt_at = decision.status.value, decision.next_attempt_at
            if decision.gave_up:
                change.reason_code = "retries-exhausted"
        changes.append(change)
    deliveries.write_changes(session, changes, now)
    _after_changes(session, book, changes, quiet, now)
    return len(changes)


def _after_changes(session: Session, book: IncidentBook, changes: Sequence[Change],
                   quiet: QuietHours | None, now: datetime) -> None:
    """Failed for good: the next channel. Due again: unless a newer version replaced it."""
    failed = [c.row.notice_id for c in changes if c.status == S.PERMANENT_FAILURE]
    if failed:
        _fall_back(session, book, failed, quiet, now)
    again = {c.row.person_id for c in changes if c.status in delivery_state.UNSENT_STATES}
    deliveries.supersede_older(session, again, now)


def record_changes(session: Session, book: IncidentBook, changes: Sequence[Change],
                   quiet: QuietHours | None, now: datetime) -> None:
    """Changes decided elsewhere (the postal mail-out: services/dispatch/mailouts.py), written
    with their events and followed like a receipt's: a permanent failure falls back."""
    deliveries.write_changes(session, changes, now)
    _after_changes(session, book, changes, quiet, now)


def repin(session: Session, delivery_id: int, owner: str, attempt: int, gateway: str) -> bool:
    """A failover moving a claimed SMS to another gateway, recorded before it is sent there."""
    return deliveries.repin(session, delivery_id, owner, attempt, gateway)


# ------------------------------------------------------------------------------ receipts


def record_signed_receipt(
    session: Session, book: IncidentBook, provider: str, receipt: Receipt, retry: RetryPolicy,
    quiet: QuietHours | None, now: datetime, deferral_timeout_s: float, nonce_keep_s: float,
) -> ReceiptOutcome:
    """record_receipt, once per signed receipt: its nonce is taken in the same transaction."""
    if not receipt_nonces.claim_nonce(session, provider, receipt.nonce, now.timestamp(), nonce_keep_s):
        return ReceiptOutcome.REPLAYED
    return record_receipt(session, book, provider, receipt, retry, quiet, now, deferral_timeout_s)


def record_signed_receipts(
    session: Session, book: IncidentBook, batch: Sequence[tuple[str, Receipt]], retry: RetryPolicy,
    quiet: QuietHours | None, now: datetime, deferral_timeout_s: float, nonce_keep_s: float,
    before_commit: Callable[[], None] = lambda: None,
) -> list[ReceiptOutcome]:
    """record_signed_receipt for a batch of (provider, receipt) in one transaction (the
    receipts' group commit, services/dispatch/receipt_batches.py); outcomes in the batch's
    order. Applied in reference order, arrival order kept within a delivery, so two batches
    (two replicas) lock the deliveries they share in the same order. `before_commit` runs with
    everything flushed, so only COMMIT is left after it; raising there rolls the batch back
    (the batch's commit gate, abandoned at stop)."""
    taken = receipt_nonces.claim_nonces(session, [(p, r.nonce) for p, r in batch],
                                        now.timestamp(), nonce_keep_s)
    outcomes: list[ReceiptOutcome] = [ReceiptOutcome.REPLAYED] * len(batch)
    for i in sorted(range(len(batch)), key=lambda i: batch[i][1].reference):
        provider, receipt = batch[i]
        if (provider, receipt.nonce) not in taken:
            continue  # taken before, or by an earlier receipt of this batch
        taken.discard((provider, receipt.nonce))
        outcomes[i] = record_receipt(session, book, provider, receipt, retry, quiet, now,
                                     deferral_timeout_s)
    session.flush()
    before_commit()
    return outcomes


def record_receipt(
    session: Session, book: IncidentBook, provider: str, receipt: Receipt, retry: RetryPolicy,
    quiet: QuietHours | None, now: datetime, deferral_timeout_s: float = 5 * 86400.0,
    source: str = "receipt",
) -> ReceiptOutcome:
    """Apply a provider's receipt (delivery_state.receipt_transition). A temporary failure
    (e.g. an SMS expired: phone off for the validity period) is sent again later under a new
    reference, since the gateway dedupes the old one; a permanent one falls back. An email
    deferral changes nothing but a timer: the provider is still trying. `source` names where
    the status came from in the reason code ("receipt", or "lookup": record_lookup)."""
    notice_id, channel = delivery_state.parse_reference(receipt.reference)
    row = deliveries.lock_delivery(session, notice_id, channel)
    if row is None:
        return ReceiptOutcome.UNKNOWN
    # The gateway an SMS is pinned to is the only one that may report on it.
    if row.gateway is not None and row.gateway != provider:
        return ReceiptOutcome.WRONG_PROVIDER
    deferral = delivery_state.is_deferral(channel, receipt.provider_status)
    decision = delivery_state.receipt_transition(
        row.status, receipt.status, channel, current_generation=row.reference == receipt.reference
    )
    if deferral and decision.outcome is ReceiptOutcome.DUPLICATE:  # 'sent' stays 'sent'
        decision = delivery_state.ReceiptDecision(ReceiptOutcome.UPDATED, S.SENT)
    if decision.outcome is not ReceiptOutcome.UPDATED:
        return decision.outcome
    assert decision.status is not None
    reason = f"{source}-{receipt.provider_status}"[:64]
    change = Change(row, decision.status.value, provider, reason,
                    provider_reference=receipt.provider_reference[:200] or KEEP)
    if deferral:
        # Act only if the provider says nothing more for the whole timeout (expire_deferrals).
        change.next_attempt_at = now.timestamp() + deferral_timeout_s
        change.may_hold = True
    elif decision.status is S.TEMPORARY_FAILURE:
        again = policy.retry_or_give_up(retry, S.TEMPORARY_FAILURE, row.attempts,
                                        row.first_attempt_at, now)
        change.status = again.status.value
        if not again.gave_up:
            change.next_attempt_at = again.next_attempt_at
            if delivery_state.resend_needs_new_reference(channel):
                change.generation = row.generation + 1
                change.reference = delivery_state.reference_for(notice_id, channel,
                                                                change.generation)
                change.may_hold, change.unpin = False, True
    deliveries.write_changes(session, [change], now)
    _after_changes(session, book, [change], quiet, now)
    return ReceiptOutcome.UPDATED


def take_status_lookups(
    session: Session, providers: Sequence[str], now: datetime, limit: int, interval_s: float,
    max_age_s: float,
) -> list[deliveries.LookupDue]:
    """The SMS a status lookup pass asks about (store/deliveries.take_status_lookups), each
    due again `interval_s` on unless its answer settles it."""
    t = now.timestamp()
    return deliveries.take_status_lookups(session, t, providers, limit, t + interval_s,
                                          t - max_age_s)


def record_lookup(
    session: Session, book: IncidentBook, due: deliveries.LookupDue, answer: StatusAnswer,
    retry: RetryPolicy, quiet: QuietHours | None, now: datetime, deferral_timeout_s: float,
) -> ReceiptOutcome:
    """A status lookup's answer, applied exactly as a receipt saying the same would be
    (record_receipt: a permanent failure falls back once, a final delivery is left alone, a
    receipt arriving afterwards is a duplicate). It names the reference we asked about, so an
    answer about a generation since resent is stale."""
    assert answer.status is not None and answer.provider_status is not None  # noqa: S101
    receipt = Receipt(due.provider_reference, due.reference, answer.status,
                      answer.provider_status, None)
    return record_receipt(session, book, due.provider, receipt, retry, quiet, now,
                          deferral_timeout_s, source="lookup")


def expire_deferrals(
    session: Session, book: IncidentBook, retry: RetryPolicy, quiet: QuietHours | None,
    now: datetime,
) -> int:
    """Emails deferred and then not heard of for the whole deferral timeout: a temporary
    failure now — resent under the SAME reference (the same Message-ID) while the retry budget
    lasts, else failed for good and fallen back."""
    changes: list[Change] = []
    for row in deliveries.due_deferrals(session, now):
        again = policy.retry_or_give_up(retry, S.TEMPORARY_FAILURE, row.attempts,
                                        row.first_attempt_at, now)
        changes.append(Change(row, again.status.value, row.provider, "deferral-timeout",
                              next_attempt_at=again.next_attempt_at))
    deliveries.write_changes(session, changes, now)
    _after_changes(session, book, changes, quiet, now)
    return len(changes)
