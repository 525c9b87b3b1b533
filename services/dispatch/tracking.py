"""Delivery tracking: the units of work that change deliveries. Each function runs in ONE
transaction (`await db.run(fn, *args)`): it reads through the store, decides with the rules
(delivery_state.py, policy.py) and writes through the store, so every change and its event are
committed together. No SQL here, and no rule either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from services.common.messages import DeliveryStatus, NoticeMessage, decode_notice
from services.dispatch import delivery_state, policy
from services.dispatch.delivery_state import ReceiptOutcome
from services.dispatch.incidents import IncidentBook
from services.dispatch.policy import QuietHours, RetryPolicy
from services.dispatch.providers.receipts import Receipt
from services.dispatch.store import deliveries, notices
from services.dispatch.store.deliveries import KEEP, Change, NewDelivery

S = DeliveryStatus


# ------------------------------------------------------------------------------ planning


def record_notices(
    session: Session, book: IncidentBook, received: Sequence[tuple[NoticeMessage, bytes]],
    quiet: QuietHours | None, now: datetime,
) -> int:
    """Store notices (idempotently) and queue the deliveries of those whose incident is known.
    A notice whose incident has not arrived yet is kept, unplanned, and planned when it does.
    Returns the number of new notices."""
    unique: dict[str, tuple[NoticeMessage, bytes]] = {}
    for notice, raw in received:
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
    return NewDelivery(
        notice.notice_id, notice.incident_id, notice.person_id, notice.version, channel,
        status.value, delivery_state.reference_for(notice.notice_id, channel), due,
    )


def _plan(session: Session, planned: Iterable[NoticeMessage], book: IncidentBook,
          quiet: QuietHours | None, now: datetime) -> None:
    new: list[NewDelivery] = []
    for notice in planned:
        entry = book.get(session, notice.incident_id)
        assert entry is not None  # planned only once the incident is known
        new += [_new_delivery(notice, c, quiet, now)
                for c in policy.first_channels(notice.channels, entry.policy)]
    deliveries.insert_deliveries(session, new, now)


def _fall_back(session: Session, book: IncidentBook, notice_ids: Iterable[str],
               quiet: QuietHours | None, now: datetime) -> None:
    """After permanent failures: queue each notice's next channel (policy.fallback_channel)."""
    ids = sorted(set(notice_ids))
    current = deliveries.statuses_by_notice(session, ids)
    payloads = notices.notice_payloads(session, ids)
    new: list[NewDelivery] = []
    for notice_id in ids:
        notice = decode_notice(payloads[notice_id])
        entry = book.get(session, notice.incident_id)
        channel = policy.fallback_channel(
            notice.channels, entry.policy if entry else None, current.get(notice_id, {})
        )
        if channel is not None:
            new.append(_new_delivery(notice, channel, quiet, now))
    deliveries.insert_deliveries(session, new, now, reason_code="fallback")


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


def record_results(
    session: Session, book: IncidentBook, outcomes: Sequence[SendOutcome], retry: RetryPolicy,
    quiet: QuietHours | None, now: datetime,
) -> int:
    """Record what the gateways answered, a batch at a time: accepted, failed for good (then
    fall back), or failed for now (back off, or give up when the retry budget is spent). An
    outcome whose delivery has moved on is dropped. Returns the number recorded."""
    if not outcomes:
        return 0
    rows = deliveries.lock_deliveries(session, [o.delivery_id for o in outcomes])
    changes: list[Change] = []
    for o in outcomes:
        row = rows.get(o.delivery_id)
        if row is None or not delivery_state.outcome_is_current(row.status, row.attempts, o.attempt):
            continue
        change = Change(row, o.status.value, o.provider, o.detail)
        if o.status in delivery_state.ACCEPTED_STATES:
            change.provider_reference = (o.provider_reference or "")[:200] or None
        elif o.status is not S.PERMANENT_FAILURE:  # temporary or technical
            decision = policy.retry_or_give_up(
                retry, o.status, row.attempts, row.first_attempt_at, now, o.retry_after
            )
            change.status, change.next_attempt_at = decision.status.value, decision.next_attempt_at
            if decision.gave_up:
                change.reason_code = "retries-exhausted"
        changes.append(change)
    deliveries.write_changes(session, changes, now)
    failed = [c.row.notice_id for c in changes if c.status == S.PERMANENT_FAILURE]
    if failed:
        _fall_back(session, book, failed, quiet, now)
    return len(changes)


# ------------------------------------------------------------------------------ receipts


def record_receipt(
    session: Session, book: IncidentBook, provider: str, receipt: Receipt, retry: RetryPolicy,
    quiet: QuietHours | None, now: datetime,
) -> ReceiptOutcome:
    """Apply a provider's receipt (delivery_state.receipt_transition). A temporary failure
    (e.g. an SMS expired: phone off for the validity period) is sent again later under a new
    reference, since the gateway dedupes the old one; a permanent one falls back."""
    notice_id, channel = delivery_state.parse_reference(receipt.reference)
    row = deliveries.lock_delivery(session, notice_id, channel)
    if row is None:
        return ReceiptOutcome.UNKNOWN
    decision = delivery_state.receipt_transition(
        row.status, receipt.status, channel, current_generation=row.reference == receipt.reference
    )
    if decision.outcome is not ReceiptOutcome.UPDATED:
        return decision.outcome
    assert decision.status is not None
    reason = f"receipt-{receipt.provider_status}"[:64]
    change = Change(row, decision.status.value, provider, reason,
                    provider_reference=receipt.provider_reference[:200] or KEEP)
    if decision.status is S.TEMPORARY_FAILURE:
        again = policy.retry_or_give_up(retry, S.TEMPORARY_FAILURE, row.attempts,
                                        row.first_attempt_at, now)
        change.status = again.status.value
        if not again.gave_up:
            change.generation = row.generation + 1
            change.reference = delivery_state.reference_for(notice_id, channel, change.generation)
            change.next_attempt_at = again.next_attempt_at
    deliveries.write_changes(session, [change], now)
    if change.status == S.PERMANENT_FAILURE:
        _fall_back(session, book, [notice_id], quiet, now)
    return ReceiptOutcome.UPDATED
