"""delivery: one row per (notice, channel) carrying the state machine of
services/dispatch/delivery_state.py. Every change writes its delivery-event.v1 to the outbox in
the same transaction (store/events.py).

Work is done in batches (one claim, one result commit per batch), which is what makes
thousands of notices a second possible on a small box. Times the sender schedules on are
epoch seconds (floats), compared the same way on PostgreSQL and SQLite.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy import bindparam, insert, select, text, update
from sqlmodel import Session

from services.dispatch.delivery_state import (
    DUE_STATES,
    PENDING_STATES,
    SENDABLE_CHANNELS,
    DeliveryStatus,
)
from services.dispatch.models import Delivery
from services.dispatch.store.events import event_row, publish
from services.dispatch.store.notices import notice_payloads

DT = Delivery.__table__


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _sql_list(values: Collection[str]) -> str:
    return ",".join(f"'{v}'" for v in values)  # fixed literals from this package only


# ------------------------------------------------------------------------------ new deliveries


@dataclass(frozen=True, slots=True)
class NewDelivery:
    notice_id: str
    incident_id: str
    person_id: str
    notice_version: int
    channel: str
    status: str
    reference: str
    next_attempt_at: float  # epoch seconds


def insert_deliveries(
    session: Session, new: Sequence[NewDelivery], now: datetime, reason_code: str | None = None
) -> None:
    if not new:
        return
    rows = [
        {
            "notice_id": d.notice_id, "incident_id": d.incident_id, "person_id": d.person_id,
            "notice_version": d.notice_version, "channel": d.channel, "status": d.status,
            "attempts": 0, "reference": d.reference, "generation": 0,
            "next_attempt_at": d.next_attempt_at, "created_at": now, "updated_at": now,
        }
        for d in new
    ]
    session.execute(insert(DT), rows)
    publish(session, [event_row(d, d.status, 0, now, reason_code=reason_code) for d in new])


# ------------------------------------------------------------------------------ claiming


@dataclass(slots=True)
class Claimed:
    id: int
    notice_id: str
    incident_id: str
    person_id: str
    channel: str
    attempt: int
    reference: str
    notice_payload: bytes = b""
    email_active: bool = False  # for SMS: an email of this notice is on its way or delivered


def claim_due(
    session: Session, now: datetime, lease_s: float, limit: int, channels: Sequence[str]
) -> list[Claimed]:
    """Move up to `limit` due deliveries on `channels` to 'sending' with a lease, with their
    'sending' events. The caller commits BEFORE anything is sent. With several replicas, SKIP
    LOCKED splits the work."""
    channels = [c for c in channels if c in SENDABLE_CHANNELS]
    if not channels or limit <= 0:
        return []
    now_s = now.timestamp()
    sql = text(
        f"""
        UPDATE delivery SET status = 'sending', attempts = attempts + 1,
               lease_until = :lease, first_attempt_at = COALESCE(first_attempt_at, :now),
               updated_at = :now_dt
        WHERE id IN (
            SELECT id FROM delivery
            WHERE status IN ({_sql_list(DUE_STATES)}) AND next_attempt_at <= :now
                  AND channel IN ({_sql_list(channels)})
            ORDER BY next_attempt_at LIMIT :limit
            {"FOR UPDATE SKIP LOCKED" if _is_postgres(session) else ""})
        RETURNING id, notice_id, incident_id, person_id, channel, attempts, reference
        """  # noqa: S608 - only fixed literals are interpolated
    )
    rows = session.execute(
        sql, {"lease": now_s + lease_s, "now": now_s, "now_dt": now, "limit": limit}
    ).all()
    if not rows:
        return []
    claimed = [Claimed(*r) for r in rows]
    payloads = notice_payloads(session, [c.notice_id for c in claimed])
    active_email = _email_active(session, [c.notice_id for c in claimed if c.channel == "sms"])
    for c in claimed:
        c.notice_payload = payloads[c.notice_id]
        c.email_active = c.notice_id in active_email
    publish(session, [event_row(c, DeliveryStatus.SENDING, c.attempt, now) for c in claimed])
    return claimed


def _email_active(session: Session, notice_ids: list[str]) -> set[str]:
    """Those notices with an email on its way or delivered (not permanently failed)."""
    if not notice_ids:
        return set()
    return set(
        session.execute(
            select(DT.c.notice_id).where(
                DT.c.notice_id.in_(notice_ids),
                DT.c.channel == "email",
                DT.c.status != DeliveryStatus.PERMANENT_FAILURE.value,
            )
        ).scalars()
    )


def expire_leases(session: Session, now: datetime) -> int:
    """Deliveries left in 'sending' past their lease (the sender died mid-send) become
    technical-failure, due now: the retry uses the SAME reference, so an SMS gateway that
    already accepted it answers with the original message instead of sending a second."""
    now_s = now.timestamp()
    rows = session.execute(
        text(
            f"""
            UPDATE delivery SET status = 'technical-failure', reason_code = 'lease-expired',
                   next_attempt_at = :now, lease_until = NULL, updated_at = :now_dt
            WHERE id IN (SELECT id FROM delivery WHERE status = 'sending'
                         AND lease_until < :now {"FOR UPDATE SKIP LOCKED" if _is_postgres(session) else ""})
            RETURNING notice_id, incident_id, person_id, channel, attempts
            """  # noqa: S608 - fixed literals only
        ),
        {"now": now_s, "now_dt": now},
    ).all()
    publish(
        session,
        [event_row(r, DeliveryStatus.TECHNICAL_FAILURE, r.attempts, now, reason_code="lease-expired")
         for r in rows],
    )
    return len(rows)


# ------------------------------------------------------------------------------ changes


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    notice_id: str
    incident_id: str
    person_id: str
    channel: str
    status: str
    attempts: int
    reference: str
    generation: int
    first_attempt_at: float | None


_ROW_COLUMNS = [DT.c[f] for f in DeliveryRow.__dataclass_fields__]


def lock_deliveries(session: Session, ids: Collection[int]) -> dict[int, DeliveryRow]:
    """The deliveries with these ids, locked (PostgreSQL) until the transaction ends."""
    query = select(*_ROW_COLUMNS).where(DT.c.id.in_(list(ids)))
    if _is_postgres(session):
        query = query.with_for_update()
    return {r.id: DeliveryRow(*r) for r in session.execute(query)}


def lock_delivery(session: Session, notice_id: str, channel: str) -> DeliveryRow | None:
    """The delivery of `notice_id` on `channel`, locked (PostgreSQL), or None."""
    query = select(*_ROW_COLUMNS).where(DT.c.notice_id == notice_id, DT.c.channel == channel)
    if _is_postgres(session):
        query = query.with_for_update()
    row = session.execute(query).first()
    return DeliveryRow(*row) if row is not None else None


def statuses_by_notice(session: Session, notice_ids: Collection[str]) -> dict[str, dict[str, str]]:
    """notice_id -> {channel: status} of every delivery of those notices."""
    found: dict[str, dict[str, str]] = {}
    query = select(DT.c.notice_id, DT.c.channel, DT.c.status).where(
        DT.c.notice_id.in_(list(notice_ids))
    )
    for notice_id, channel, status in session.execute(query):
        found.setdefault(notice_id, {})[channel] = status
    return found


class _Keep(Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP  # a Change field left as it is in the row


@dataclass(slots=True)
class Change:
    """A delivery's new status and what changes with it, announced by one event. Provider,
    reason code and lease are always written; the other fields only when given."""

    row: DeliveryRow
    status: str
    provider: str | None
    reason_code: str | None
    provider_reference: str | None | _Keep = KEEP
    next_attempt_at: float | None = None
    reference: str | None = None  # with generation: resent under a new reference
    generation: int | None = None


def write_changes(session: Session, changes: Sequence[Change], now: datetime) -> None:
    """Apply the changes and publish their events."""
    if not changes:
        return
    # Group by the set of columns changed, so each group is one executemany.
    groups: dict[tuple[str, ...], list[dict]] = {}
    for c in changes:
        params = {"b_id": c.row.id, "status": c.status, "updated_at": now, "provider": c.provider,
                  "reason_code": c.reason_code, "lease_until": None}
        if c.provider_reference is not KEEP:
            params["provider_reference"] = c.provider_reference
        if c.next_attempt_at is not None:
            params["next_attempt_at"] = c.next_attempt_at
        if c.reference is not None:
            params["reference"], params["generation"] = c.reference, c.generation
        groups.setdefault(tuple(params), []).append(params)
    for keys, params in groups.items():
        stmt = (
            update(DT)
            .where(DT.c.id == bindparam("b_id"))
            .values(**{k: bindparam(k) for k in keys if k != "b_id"})
        )
        session.connection().execute(stmt, params)
    publish(
        session,
        [event_row(c.row, c.status, c.row.attempts, now, c.provider, c.reason_code) for c in changes],
    )


# ------------------------------------------------------------------------------ counting


def pending_count(session: Session) -> int:
    """Deliveries the sender still has to finish (backpressure). A queued postal delivery waits
    for the mail-out, not for us: counting it would pause notice intake for good once enough
    people are reached by post."""
    return session.execute(
        text(
            f"SELECT count(*) FROM delivery WHERE status IN ({_sql_list(PENDING_STATES)})"  # noqa: S608
            f" AND channel IN ({_sql_list(SENDABLE_CHANNELS)})"
        )
    ).scalar_one()
