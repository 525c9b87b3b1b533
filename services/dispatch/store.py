"""Dispatch's database work: incidents, notices, the delivery state machine and its events.

Every state change and the delivery event announcing it are written in ONE transaction (the
transactional outbox), so the delivery-events topic never disagrees with the table. Work is
done in batches (one claim, one result commit per batch), which is what makes thousands of
notices a second possible on a small box.

All functions are synchronous and run in a worker thread (services.common.db.run_db).
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.common.clock import utcnow
from services.common.db import session_scope
from services.common.messages import IncidentMessage, NoticeMessage, decode_incident, decode_notice
from services.common.outbox import OutboxMessage
from services.common.topics import DELIVERY_EVENTS
from services.dispatch import metrics
from services.dispatch.content.models import IncidentContent
from services.dispatch.delivery_state import (
    DeliveryStatus,
    IllegalTransition,
    apply_transition,
)
from services.dispatch.models import (
    DUE_STATUSES,
    PENDING_STATUSES,
    SENDABLE_CHANNELS,
    Delivery,
    DispatchIncident,
    DispatchNotice,
)
from services.dispatch.policy import Outcome, QuietHours, RetryPolicy, plan_channels

log = logging.getLogger(__name__)

DT = Delivery.__table__
NT = DispatchNotice.__table__
OT = OutboxMessage.__table__

S = DeliveryStatus


# ------------------------------------------------------------------------------------ incidents


@dataclass
class IncidentEntry:
    revision: int
    message: IncidentMessage
    _content: IncidentContent | None = None

    @property
    def content(self) -> IncidentContent:
        """The renderer's view, built once per revision."""
        if self._content is None:
            self._content = IncidentContent.from_contract(self.message)
        return self._content

    @property
    def policy(self) -> dict:
        return self.message.channel_policy.model_dump()


class IncidentBook:
    """In-memory cache of dispatch_incident (latest revision wins), shared by the consumer,
    the sender and the API. The table is the truth; the cache is refreshed on every upsert
    this process makes, and loaded lazily for incidents another replica stored."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._entries: dict[str, IncidentEntry] = {}
        self._lock = threading.Lock()

    def remember(self, message: IncidentMessage) -> None:
        with self._lock:
            current = self._entries.get(message.incident_id)
            if current is None or current.revision < message.revision:
                self._entries[message.incident_id] = IncidentEntry(message.revision, message)

    def cached(self, incident_id: str) -> IncidentEntry | None:
        return self._entries.get(incident_id)

    def get(self, incident_id: str, session: Session | None = None) -> IncidentEntry | None:
        entry = self._entries.get(incident_id)
        if entry is not None:
            return entry
        if session is not None:
            row = session.get(DispatchIncident, incident_id)
        else:
            with Session(self.engine) as own:
                row = own.get(DispatchIncident, incident_id)
        if row is None:
            return None
        self.remember(decode_incident(row.payload))
        return self._entries.get(incident_id)


def upsert_incident(engine: Engine, book: IncidentBook, message: IncidentMessage, raw: bytes) -> bool:
    """Store the incident if this revision is newer. Returns True when stored."""
    with session_scope(engine) as session:
        row = session.get(DispatchIncident, message.incident_id, with_for_update=True)
        if row is not None and row.revision >= message.revision:
            book.remember(decode_incident(row.payload))
            return False
        if row is None:
            session.add(
                DispatchIncident(
                    incident_id=message.incident_id, revision=message.revision, payload=raw
                )
            )
        else:
            row.revision, row.payload, row.updated_at = message.revision, raw, utcnow()
    book.remember(message)
    return True


# ------------------------------------------------------------------------------------- events



@functools.lru_cache(maxsize=256)
def _transition_counter(channel: str, status: str):  # noqa: ANN202 - a prometheus child
    """The labelled child, looked up once per (channel, status) instead of once per event."""
    return metrics.DELIVERY_TRANSITIONS.labels(channel=channel, status=status)


def event_row(
    d: dict, status: str, attempt: int, now: datetime, provider: str | None = None,
    reason_code: str | None = None,
) -> dict:
    """An outbox row carrying a delivery-event.v1 (same shape DeliveryEventMessage emits)."""
    event = {
        "schema_version": 1,
        "message_id": str(uuid.uuid4()),
        "type": "delivery-event",
        "notice_id": d["notice_id"],
        "incident_id": d["incident_id"],
        "person_id": d["person_id"],
        "channel": d["channel"],
        "status": status,
        "attempt": attempt,
        "occurred_at": now.isoformat().replace("+00:00", "Z"),
    }
    if provider:
        event["provider"] = provider[:64]
    if reason_code:
        event["reason_code"] = reason_code[:64]
    _transition_counter(d["channel"], status).inc()
    return {
        "topic": DELIVERY_EVENTS.name,
        "key": d["notice_id"],
        "payload": orjson.dumps(event),
        "created_at": now,
    }


def _publish(session: Session, rows: list[dict]) -> None:
    if rows:
        session.execute(insert(OT), rows)


# -------------------------------------------------------------------------------------- notices


def _insert_ignore(session: Session, table, rows: list[dict], key: str) -> set[str]:  # noqa: ANN001
    """INSERT … ON CONFLICT DO NOTHING; returns the keys actually inserted."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = make(table).values(rows).on_conflict_do_nothing().returning(table.c[key])
    return {r[0] for r in session.execute(stmt)}


def record_notices(
    engine: Engine,
    book: IncidentBook,
    notices: Sequence[tuple[NoticeMessage, bytes]],
    quiet: QuietHours | None,
    now: datetime,
) -> int:
    """Store notices (idempotently) and plan deliveries for those whose incident is known.
    A notice whose incident has not arrived yet is kept, unplanned, and planned when it does.
    Returns the number of new notices."""
    unique: dict[str, tuple[NoticeMessage, bytes]] = {}
    for notice, raw in notices:
        unique.setdefault(notice.notice_id, (notice, raw))
    if not unique:
        return 0
    with session_scope(engine) as session:
        known = {i: book.get(i, session) for i in {n.incident_id for n, _ in unique.values()}}
        rows = [
            {
                "notice_id": n.notice_id,
                "incident_id": n.incident_id,
                "person_id": n.person_id,
                "version": n.version,
                "planned": known[n.incident_id] is not None,
                "payload": raw,
                "created_at": now,
            }
            for n, raw in unique.values()
        ]
        inserted = _insert_ignore(session, NT, rows, "notice_id")
        plannable = [unique[i][0] for i in inserted if known[unique[i][0].incident_id] is not None]
        _plan(session, plannable, book, quiet, now)
    return len(inserted)


def plan_waiting(
    engine: Engine, book: IncidentBook, quiet: QuietHours | None, now: datetime,
    incident_id: str | None = None, limit: int = 2000,
) -> int:
    """Plan notices that arrived before their incident. Safe to run concurrently: each notice
    is claimed by flipping `planned` before its deliveries are created."""
    with session_scope(engine) as session:
        query = select(NT.c.incident_id).where(NT.c.planned.is_(False)).distinct()
        if incident_id is not None:
            query = query.where(NT.c.incident_id == incident_id)
        ready = [i for i in session.execute(query).scalars() if book.get(i, session) is not None]
        if not ready:
            return 0
        batch = (
            select(NT.c.notice_id)
            .where(NT.c.planned.is_(False), NT.c.incident_id.in_(ready))
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            batch = batch.with_for_update(skip_locked=True)
        claim = (
            update(NT)
            .where(NT.c.notice_id.in_(batch.scalar_subquery()), NT.c.planned.is_(False))
            .values(planned=True)
            .returning(NT.c.payload)
        )
        notices = [decode_notice(p) for p in session.execute(claim).scalars()]
        _plan(session, notices, book, quiet, now)
        return len(notices)


def _new_delivery(n: NoticeMessage, channel: str, status: str, due: float, now: datetime) -> dict:
    notice_id = n.notice_id
    return {
        "notice_id": notice_id,
        "incident_id": n.incident_id,
        "person_id": n.person_id,
        "notice_version": n.version,
        "channel": channel,
        "status": status,
        "attempts": 0,
        "reference": f"{notice_id}:{channel}",
        "generation": 0,
        "next_attempt_at": due,
        "created_at": now,
        "updated_at": now,
    }


def _delivery_for(n: NoticeMessage, channel: str, quiet: QuietHours | None, now: datetime) -> dict:
    if channel == "none":
        return _new_delivery(n, "none", "unreachable", 0.0, now)
    due = now
    if channel == "sms" and quiet is not None:
        due = quiet.next_allowed(now)  # queued until morning
    return _new_delivery(n, channel, "queued", due.timestamp(), now)


def _plan(
    session: Session, notices: Iterable[NoticeMessage], book: IncidentBook,
    quiet: QuietHours | None, now: datetime,
) -> None:
    deliveries: list[dict] = []
    for notice in notices:
        entry = book.get(notice.incident_id, session)
        assert entry is not None
        plan = plan_channels(notice.channels, entry.policy)
        channels = ["none"] if plan.outcome is not Outcome.SEND else [c.value for c in plan.send_now]
        deliveries += [_delivery_for(notice, c, quiet, now) for c in channels]
    if not deliveries:
        return
    session.execute(insert(DT), deliveries)
    _publish(session, [event_row(d, d["status"], 0, now) for d in deliveries])


# ------------------------------------------------------------------------------------ claiming


@dataclass
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
    engine: Engine, now: datetime, lease_s: float, limit: int, channels: Sequence[str]
) -> list[Claimed]:
    """Move up to `limit` due deliveries to 'sending' (committed BEFORE anything is sent) and
    publish their 'sending' events. With several replicas, SKIP LOCKED splits the work."""
    channels = [c for c in channels if c in SENDABLE_CHANNELS]
    if not channels or limit <= 0:
        return []
    now_s = now.timestamp()
    with session_scope(engine) as session:
        pg = session.get_bind().dialect.name == "postgresql"
        statuses = ",".join(f"'{s}'" for s in DUE_STATUSES)
        chans = ",".join(f"'{c}'" for c in channels)
        sql = text(
            f"""
            UPDATE delivery SET status = 'sending', attempts = attempts + 1,
                   lease_until = :lease, first_attempt_at = COALESCE(first_attempt_at, :now),
                   updated_at = :now_dt
            WHERE id IN (
                SELECT id FROM delivery
                WHERE status IN ({statuses}) AND next_attempt_at <= :now AND channel IN ({chans})
                ORDER BY next_attempt_at LIMIT :limit {"FOR UPDATE SKIP LOCKED" if pg else ""})
            RETURNING id, notice_id, incident_id, person_id, channel, attempts, reference
            """  # noqa: S608 - only fixed literals are interpolated
        )
        rows = session.execute(
            sql, {"lease": now_s + lease_s, "now": now_s, "now_dt": now, "limit": limit}
        ).all()
        if not rows:
            return []
        claimed = [Claimed(*r) for r in rows]
        ids = [c.notice_id for c in claimed]
        payloads = dict(
            session.execute(
                select(NT.c.notice_id, NT.c.payload).where(NT.c.notice_id.in_(ids))
            ).all()
        )
        sms_ids = [c.notice_id for c in claimed if c.channel == "sms"]
        active_email: set[str] = set()
        if sms_ids:
            active_email = set(
                session.execute(
                    select(DT.c.notice_id).where(
                        DT.c.notice_id.in_(sms_ids),
                        DT.c.channel == "email",
                        DT.c.status != "permanent-failure",
                    )
                ).scalars()
            )
        events = []
        for c in claimed:
            c.notice_payload = payloads[c.notice_id]
            c.email_active = c.notice_id in active_email
            events.append(event_row(c.__dict__, "sending", c.attempt, now))
        _publish(session, events)
    return claimed


def expire_leases(engine: Engine, now: datetime) -> int:
    """Deliveries left in 'sending' past their lease (the sender died mid-send) become
    technical-failure, due now: the retry uses the SAME reference, so an SMS gateway that
    already accepted it answers with the original message instead of sending a second."""
    now_s = now.timestamp()
    with session_scope(engine) as session:
        pg = session.get_bind().dialect.name == "postgresql"
        rows = session.execute(
            text(
                f"""
                UPDATE delivery SET status = 'technical-failure', reason_code = 'lease-expired',
                       next_attempt_at = :now, lease_until = NULL, updated_at = :now_dt
                WHERE id IN (SELECT id FROM delivery WHERE status = 'sending'
                             AND lease_until < :now {"FOR UPDATE SKIP LOCKED" if pg else ""})
                RETURNING notice_id, incident_id, person_id, channel, attempts
                """  # noqa: S608 - fixed literals only
            ),
            {"now": now_s, "now_dt": now},
        ).mappings().all()
        _publish(
            session,
            [event_row(r, "technical-failure", r["attempts"], now, reason_code="lease-expired")
             for r in rows],
        )
        return len(rows)


# ------------------------------------------------------------------------------------ results


@dataclass
class SendOutcome:
    delivery_id: int
    attempt: int
    status: DeliveryStatus
    provider: str | None = None
    provider_reference: str | None = None
    detail: str | None = None
    retry_after: float | None = None


@dataclass
class _Change:
    row: dict
    status: str
    values: dict = field(default_factory=dict)
    provider: str | None = None
    reason: str | None = None


def _retry_or_give_up(
    row: dict, failure: DeliveryStatus, retry: RetryPolicy, now: datetime,
    retry_after: float | None,
) -> tuple[str, float]:
    attempts = max(int(row["attempts"]), 1)
    first = row.get("first_attempt_at") or now.timestamp()
    delay = retry.next_delay(attempts, timedelta(seconds=now.timestamp() - first))
    if delay is None:
        return S.PERMANENT_FAILURE.value, 0.0
    return failure.value, now.timestamp() + max(delay, retry_after or 0.0)


def apply_results(
    engine: Engine, book: IncidentBook, outcomes: Sequence[SendOutcome], retry: RetryPolicy,
    quiet: QuietHours | None, now: datetime,
) -> int:
    """Record what the gateways answered, with events, in one transaction. An outcome whose
    delivery has moved on (a receipt overtook it, or the lease expired and another attempt
    started) is dropped: the row's current state is the truth."""
    if not outcomes:
        return 0
    with session_scope(engine) as session:
        pg = session.get_bind().dialect.name == "postgresql"
        query = select(DT).where(DT.c.id.in_([o.delivery_id for o in outcomes]))
        if pg:
            query = query.with_for_update()
        rows = {r["id"]: dict(r) for r in session.execute(query).mappings()}
        changes: list[_Change] = []
        for o in outcomes:
            row = rows.get(o.delivery_id)
            if row is None or row["status"] != "sending" or row["attempts"] != o.attempt:
                continue
            values: dict = {"provider": o.provider, "reason_code": o.detail, "lease_until": None}
            if o.status in (S.SENT, S.DELIVERED):
                status = o.status.value
                values["provider_reference"] = (o.provider_reference or "")[:200] or None
            elif o.status is S.PERMANENT_FAILURE:
                status = o.status.value
            else:  # temporary or technical: back off and retry, within the policy's bounds
                status, due = _retry_or_give_up(row, o.status, retry, now, o.retry_after)
                values["next_attempt_at"] = due
                if status == S.PERMANENT_FAILURE.value:
                    values["reason_code"] = "retries-exhausted"
            changes.append(_Change(row, status, values, o.provider, values["reason_code"]))
        _write_changes(session, changes, now)
        failed = [c.row for c in changes if c.status == S.PERMANENT_FAILURE.value]
        if failed:
            fall_back(session, book, failed, quiet, now)
        return len(changes)


def _write_changes(session: Session, changes: list[_Change], now: datetime) -> None:
    if not changes:
        return
    columns = ("provider", "provider_reference", "reason_code", "next_attempt_at", "lease_until",
               "reference", "generation")
    # Group by the set of columns changed, so each group is one executemany.
    groups: dict[tuple[str, ...], list[dict]] = {}
    for c in changes:
        keys = tuple(k for k in columns if k in c.values)
        params = {"b_id": c.row["id"], "status": c.status, "updated_at": now}
        params.update({k: c.values[k] for k in keys})
        groups.setdefault(keys, []).append(params)
        c.row["status"] = c.status
    for keys, params in groups.items():
        stmt = (
            update(DT)
            .where(DT.c.id == bindparam("b_id"))
            .values(status=bindparam("status"), updated_at=bindparam("updated_at"),
                    **{k: bindparam(k) for k in keys})
        )
        session.connection().execute(stmt, params)
    _publish(
        session,
        [event_row(c.row, c.status, c.row["attempts"], now, c.provider, c.reason) for c in changes],
    )


def fall_back(
    session: Session, book: IncidentBook, failed: list[dict], quiet: QuietHours | None,
    now: datetime,
) -> None:
    """After a permanent failure: if no other channel of the notice is still working, queue
    the next channel in the incident's fallback order (email → SMS → postal), or put the person
    on the unreachable list (channel 'none') when nothing is left."""
    notice_ids = sorted({r["notice_id"] for r in failed})
    siblings: dict[str, list[dict]] = {}
    for r in session.execute(select(DT).where(DT.c.notice_id.in_(notice_ids))).mappings():
        siblings.setdefault(r["notice_id"], []).append(dict(r))
    payloads = dict(
        session.execute(
            select(NT.c.notice_id, NT.c.payload).where(NT.c.notice_id.in_(notice_ids))
        ).all()
    )
    new: list[dict] = []
    for notice_id in notice_ids:
        rows = siblings.get(notice_id, [])
        if any(r["status"] != S.PERMANENT_FAILURE.value for r in rows):
            continue  # another channel is still on its way (or delivered, or already queued)
        notice = decode_notice(payloads[notice_id])
        entry = book.get(notice.incident_id, session)
        plan = plan_channels(notice.channels, entry.policy if entry else None)
        tried = {r["channel"] for r in rows}
        order = [c.value for c in (*plan.send_now, *plan.fallback)]
        nxt = next((c for c in order if c not in tried), "none")
        new.append(_delivery_for(notice, nxt, quiet, now))
    if new:
        session.execute(insert(DT), new)
        _publish(session, [event_row(d, d["status"], 0, now, reason_code="fallback") for d in new])


# ------------------------------------------------------------------------------------ receipts


def apply_receipt(
    engine: Engine, book: IncidentBook, reference: str, status: DeliveryStatus, provider: str,
    provider_reference: str | None, retry: RetryPolicy, quiet: QuietHours | None, now: datetime,
    reason: str | None = None,
) -> str:
    """Apply a provider's receipt. Returns 'updated', 'duplicate', 'stale' or 'unknown'."""
    notice_id, _, rest = reference.partition(":")
    channel = rest.split(":", 1)[0]
    with session_scope(engine) as session:
        query = select(DT).where(DT.c.notice_id == notice_id, DT.c.channel == channel)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        found = session.execute(query).mappings().first()
        if found is None:
            return "unknown"
        row = dict(found)
        if row["reference"] != reference:
            return "stale"  # a receipt for an earlier generation of this delivery
        if row["status"] == status.value:
            return "duplicate"
        if row["status"] == S.DELIVERED.value and channel != "email":
            return "stale"  # a handset receipt is final; only email has late bounces
        try:
            target = apply_transition(row["status"], status)
        except IllegalTransition:
            return "stale"
        values: dict = {"provider": provider, "reason_code": reason, "lease_until": None}
        if provider_reference:
            values["provider_reference"] = provider_reference[:200]
        new_status = target.value
        if target is S.TEMPORARY_FAILURE:
            # The provider gave up (e.g. phone off for the validity period): send again later
            # under a new reference, since the gateway dedupes the old one.
            new_status, due = _retry_or_give_up(row, target, retry, now, None)
            if new_status != S.PERMANENT_FAILURE.value:
                generation = int(row["generation"]) + 1
                values.update(
                    next_attempt_at=due, generation=generation,
                    reference=f"{notice_id}:{channel}:g{generation}",
                )
        _write_changes(session, [_Change(row, new_status, values, provider, reason)], now)
        if new_status == S.PERMANENT_FAILURE.value:
            fall_back(session, book, [row], quiet, now)
        return "updated"


# ------------------------------------------------------------------------------------ reading


def pending_count(engine: Engine) -> int:
    statuses = ",".join(f"'{s}'" for s in PENDING_STATUSES)
    with Session(engine) as session:
        return session.execute(
            text(f"SELECT count(*) FROM delivery WHERE status IN ({statuses})")  # noqa: S608
        ).scalar_one()


def summary(engine: Engine, incident_id: str) -> dict:
    with Session(engine) as session:
        counts = session.execute(
            select(DT.c.channel, DT.c.status, text("count(*)"))
            .where(DT.c.incident_id == incident_id)
            .group_by(DT.c.channel, DT.c.status)
        ).all()
        notices = session.execute(
            select(NT.c.planned, text("count(*)"))
            .where(NT.c.incident_id == incident_id)
            .group_by(NT.c.planned)
        ).all()
    by_channel: dict[str, dict[str, int]] = {}
    for channel, status, n in counts:
        by_channel.setdefault(channel, {})[status] = n
    planned = {bool(p): n for p, n in notices}
    return {
        "incident_id": incident_id,
        "notices": sum(planned.values()),
        "awaiting_incident": planned.get(False, 0),
        "by_channel": by_channel,
    }


def unreachable(engine: Engine, incident_id: str) -> list[tuple[dict, bytes]]:
    """Deliveries needing a postal mail-out or the s 115 public notice, with the notice payload
    (still sealed) to read the person's details from."""
    with Session(engine) as session:
        rows = session.execute(
            select(DT, NT.c.payload)
            .join(NT, NT.c.notice_id == DT.c.notice_id)
            .where(
                DT.c.incident_id == incident_id,
                ((DT.c.channel == "postal") & (DT.c.status == "queued"))
                | ((DT.c.channel == "none") & (DT.c.status == "unreachable")),
            )
            .order_by(DT.c.id)
        ).mappings().all()
    return [({k: r[k] for k in r if k != "payload"}, r["payload"]) for r in rows]
