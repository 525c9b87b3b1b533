"""delivery: one row per (notice, channel) carrying the state machine of
services/dispatch/delivery_state.py. Every change writes its delivery-event.v1 to the outbox in
the same transaction (store/events.py).

Work is done in batches (one claim, one result commit per batch), which is what makes
thousands of notices a second possible on a small box. Times the sender schedules on are
epoch seconds (floats), compared the same way on PostgreSQL and SQLite.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy import bindparam, func, select, text, update
from sqlmodel import Session

from services.common.db import insert_rows, update_rows
from services.dispatch.delivery_state import (
    DUE_STATES,
    NEVER_REACHED_STATES,
    PENDING_STATES,
    SENDABLE_CHANNELS,
    TOLD_STATES,
    UNSENT_STATES,
    DeliveryStatus,
)
from services.dispatch.models import Delivery
from services.dispatch.store.events import event_row, publish
from services.dispatch.store.notices import notice_payloads
from services.dispatch.store.senders import db_now, forget_idle, lapsed_owners

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
    only_if_told: bool = False  # see models.Delivery


def insert_deliveries(
    session: Session, new: Sequence[NewDelivery], now: datetime, reason_code: str | None = None
) -> None:
    if not new:
        return
    insert_rows(session, DT, [_new_row(d, now) for d in new])
    publish(session, [event_row(d, d.status, 0, now, reason_code=reason_code) for d in new])


def insert_not_needed(session: Session, new: Sequence[NewDelivery], now: datetime) -> None:
    """Deliveries of a correction that has nothing to correct when planned, stored already
    'not-needed' (reason `correction_not_needed`, with their events) as mark_not_needed leaves
    one settled later: never sent, and counted the same way."""
    if not new:
        return
    insert_rows(session, DT, [{**_new_row(d, now), "status": DeliveryStatus.NOT_NEEDED.value,
                               "reason_code": "correction_not_needed"} for d in new])
    publish(session, [event_row(d, DeliveryStatus.NOT_NEEDED, 0, now,
                                reason_code="correction_not_needed") for d in new])


def _new_row(d: NewDelivery, now: datetime) -> dict:
    return {
        "notice_id": d.notice_id, "incident_id": d.incident_id, "person_id": d.person_id,
        "notice_version": d.notice_version, "channel": d.channel, "status": d.status,
        "attempts": 0, "reference": d.reference, "generation": 0,
        "next_attempt_at": d.next_attempt_at, "only_if_told": d.only_if_told,
        "created_at": now, "updated_at": now,
    }


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
    # What the reference is pinned to (see models.Delivery): the same message on every attempt.
    gateway: str | None = None
    may_hold: bool = False
    content_revision: int | None = None
    says_emailed: bool = False  # SMS: an email of this notice was on its way or delivered
    says_update: bool = False  # an earlier version of the person's notice was sent
    notice_payload: bytes = b""


def claim_due(
    session: Session, owner: str, now: datetime, lease_s: float, limits: Mapping[str, int]
) -> list[Claimed]:
    """Move up to `limits[channel]` due deliveries of each channel to 'sending', claimed by
    `owner` (whose lease, in dispatch_sender, is what keeps the claim), with their 'sending'
    events. The caller commits BEFORE anything is sent. With several replicas, SKIP LOCKED
    splits the work. The first claim of a reference pins what its message says: the incident
    revision, and whether an email of the notice or an earlier version was on its way."""
    lock = "FOR UPDATE SKIP LOCKED" if _is_postgres(session) else ""
    claimed: list[Claimed] = []
    for channel, limit in limits.items():
        if channel not in SENDABLE_CHANNELS or limit <= 0:
            continue
        says_emailed = (
            """COALESCE(says_emailed, EXISTS (
                    SELECT 1 FROM delivery e WHERE e.notice_id = delivery.notice_id
                    AND e.channel = 'email'
                    AND e.status NOT IN ('permanent-failure', 'superseded')))"""
            if channel == "sms" else "says_emailed"
        )
        sql = text(
            f"""
            UPDATE delivery SET status = 'sending', attempts = attempts + 1,
                   lease_owner = :owner, lease_until = {db_now(session)} + :lease,
                   first_attempt_at = COALESCE(first_attempt_at, :now), updated_at = :now_dt,
                   content_revision = COALESCE(content_revision, (
                       SELECT i.revision FROM dispatch_incident i
                       WHERE i.incident_id = delivery.incident_id)),
                   says_update = COALESCE(says_update, EXISTS (
                       SELECT 1 FROM delivery p WHERE p.person_id = delivery.person_id
                       AND p.incident_id = delivery.incident_id
                       AND p.notice_version < delivery.notice_version
                       AND p.status IN ({_sql_list(TOLD_STATES)}))),
                   says_emailed = {says_emailed}
            WHERE id IN (
                SELECT id FROM delivery
                WHERE status IN ({_sql_list(DUE_STATES)}) AND next_attempt_at <= :now
                      AND channel = :channel
                ORDER BY next_attempt_at LIMIT :limit {lock})
            RETURNING id, notice_id, incident_id, person_id, channel, attempts, reference,
                      gateway, may_hold, content_revision, says_emailed, says_update
            """  # noqa: S608 - only fixed literals are interpolated
        )
        rows = session.execute(sql, {
            "owner": owner, "lease": lease_s, "now": now.timestamp(), "now_dt": now,
            "channel": channel, "limit": limit,
        }).all()
        claimed += [
            Claimed(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), r[9],
                    bool(r[10]), bool(r[11]))
            for r in rows
        ]
    if not claimed:
        return []
    claimed.sort(key=lambda c: c.id)
    payloads = notice_payloads(session, [c.notice_id for c in claimed])
    for c in claimed:
        c.notice_payload = payloads[c.notice_id]
    publish(session, [event_row(c, DeliveryStatus.SENDING, c.attempt, now) for c in claimed])
    return claimed


def pin_gateways(session: Session, chosen: Mapping[str, Collection[int]]) -> None:
    """Record the gateway each newly claimed reference goes to ({gateway: delivery ids}),
    before anything is sent."""
    for gateway, ids in chosen.items():
        if ids:
            session.execute(update(DT).where(DT.c.id.in_(list(ids))).values(gateway=gateway))


def repin(session: Session, delivery_id: int, owner: str, attempt: int, gateway: str) -> bool:
    """Move a claimed reference to another gateway (a failover) — only while `owner` still
    holds the claim and no gateway may hold the message. Returns whether it moved."""
    moved = session.execute(
        update(DT)
        .where(DT.c.id == delivery_id, DT.c.status == DeliveryStatus.SENDING.value,
               DT.c.lease_owner == owner, DT.c.attempts == attempt, DT.c.may_hold.is_(False))
        .values(gateway=gateway)
        .returning(DT.c.id)
    ).first()
    return moved is not None


def expire_leases(session: Session, me: str, lease_s: float, now: datetime) -> list[DeliveryKey]:
    """Recover the claims of senders presumed dead (store/senders.lapsed_owners: their lease
    lapsed on the database's clock while `me` was alive to see it, or a whole lease ago), and
    claims from before owners existed whose own lease lapsed. They become technical-failure,
    due now, and may be held by the gateway they went to: the retry uses the SAME reference,
    gateway and body, so an SMS gateway that already took it answers with the original message
    instead of sending a second. Claims of a live owner are never recovered, however long
    their send takes."""
    dead = lapsed_owners(session, me, lease_s)
    owned = "lease_owner IN :dead" if dead else "FALSE"
    lock = "FOR UPDATE SKIP LOCKED" if _is_postgres(session) else ""
    sql = text(
        f"""
        UPDATE delivery SET status = 'technical-failure', reason_code = 'lease-expired',
               next_attempt_at = :now, lease_until = NULL, lease_owner = NULL, may_hold = TRUE,
               updated_at = :now_dt
        WHERE status = 'sending' AND id IN (
            SELECT id FROM delivery WHERE status = 'sending'
            AND ({owned} OR (lease_owner IS NULL AND lease_until < {db_now(session)})) {lock})
        RETURNING notice_id, incident_id, person_id, channel, attempts
        """  # noqa: S608 - fixed literals only
    )
    if dead:
        sql = sql.bindparams(bindparam("dead", expanding=True))
    params = {"now": now.timestamp(), "now_dt": now} | ({"dead": dead} if dead else {})
    rows = session.execute(sql, params).all()
    publish(
        session,
        [event_row(r, DeliveryStatus.TECHNICAL_FAILURE, r.attempts, now, reason_code="lease-expired")
         for r in rows],
    )
    forget_idle(session, dead)
    return [DeliveryKey(*r[:4]) for r in rows]


@dataclass(frozen=True, slots=True)
class DeliveryKey:
    notice_id: str
    incident_id: str
    person_id: str
    channel: str


def supersede_older(session: Session, persons: Collection[str], now: datetime) -> int:
    """Deliveries of these persons' notices not handed to any gateway yet, for which a newer
    version of the same person's notice exists, become 'superseded' (with their events): only
    the newest unsent version goes out. One already on its way or sent stays; the newer
    version follows it. Returns how many."""
    if not persons:
        return 0
    unsent = _sql_list(UNSENT_STATES)
    sql = text(
        f"""
        UPDATE delivery SET status = 'superseded', reason_code = 'superseded',
               lease_until = NULL, updated_at = :now_dt
        WHERE status IN ({unsent}) AND id IN (
            SELECT d.id FROM delivery d
            WHERE d.person_id IN :persons AND d.status IN ({unsent})
              AND EXISTS (SELECT 1 FROM delivery n WHERE n.person_id = d.person_id
                          AND n.incident_id = d.incident_id
                          AND n.notice_version > d.notice_version))
        RETURNING notice_id, incident_id, person_id, channel, attempts
        """  # noqa: S608 - fixed literals only
    ).bindparams(bindparam("persons", expanding=True))
    rows = session.execute(sql, {"persons": sorted(set(persons)), "now_dt": now}).all()
    publish(session, [event_row(r, DeliveryStatus.SUPERSEDED, r.attempts, now,
                                reason_code="superseded") for r in rows])
    return len(rows)



def supersede_earlier(session: Session, incident_id: str, person_id: str, version: int,
                      now: datetime) -> int:
    """The person's deliveries of versions before `version` not handed to any gateway yet
    become 'superseded' (with their events), whether or not `version` has deliveries of its
    own (a correction with nothing to say has none). Returns how many."""
    unsent = _sql_list(UNSENT_STATES)
    sql = text(
        f"""
        UPDATE delivery SET status = 'superseded', reason_code = 'superseded',
               lease_until = NULL, updated_at = :now_dt
        WHERE status IN ({unsent}) AND incident_id = :incident AND person_id = :person
              AND notice_version < :version
        RETURNING notice_id, incident_id, person_id, channel, attempts
        """  # noqa: S608 - fixed literals only
    )
    rows = session.execute(sql, {"incident": incident_id, "person": person_id,
                                 "version": version, "now_dt": now}).all()
    publish(session, [event_row(r, DeliveryStatus.SUPERSEDED, r.attempts, now,
                                reason_code="superseded") for r in rows])
    return len(rows)


def earlier_told(session: Session, incident_id: str, person_id: str, version: int) -> bool:
    """Whether a version of the person's notice before `version` was (or may have been) handed
    to a gateway: on its way or sent (TOLD_STATES, what says_update counts), or a claim whose
    gateway may hold it (may_hold). Call it after `supersede_earlier` in the same transaction:
    a delivery a sender claimed meanwhile is then seen as on its way, never as unsent."""
    sql = text(
        f"""
        SELECT 1 FROM delivery WHERE incident_id = :incident AND person_id = :person
               AND notice_version < :version
               AND (status IN ({_sql_list(TOLD_STATES)}) OR may_hold)
        LIMIT 1
        """  # noqa: S608 - fixed literals only
    )
    return session.execute(sql, {"incident": incident_id, "person": person_id,
                                 "version": version}).first() is not None


def settle_unneeded_corrections(session: Session, now: datetime,
                                channels: Collection[str]) -> list[DeliveryKey]:
    """Due deliveries on `channels` sent only if an earlier version reached the person
    (`only_if_told`, set when planned) — none of whose person's earlier versions can reach
    them now (every one bounced, failed for good or was never sent: NEVER_REACHED_STATES) —
    and that no gateway may hold, become 'not-needed' (with their events, reason
    `correction_not_needed`): never sent. Every such due row, in one statement on the partial
    index of due `only_if_told` rows (normally empty), so the claim that follows in the same
    transaction never takes one. Returns them."""
    if not channels:
        return []
    lock = "FOR UPDATE SKIP LOCKED" if _is_postgres(session) else ""
    sql = text(
        f"""
        UPDATE delivery SET status = 'not-needed', reason_code = 'correction_not_needed',
               lease_until = NULL, updated_at = :now_dt
        WHERE id IN (
            SELECT d.id FROM delivery d
            WHERE d.only_if_told AND d.status IN ({_sql_list(DUE_STATES)})
                  AND d.next_attempt_at <= :now AND d.channel IN :channels AND NOT d.may_hold
                  AND NOT EXISTS (
                      SELECT 1 FROM delivery p WHERE p.incident_id = d.incident_id
                      AND p.person_id = d.person_id AND p.notice_version < d.notice_version
                      AND p.status NOT IN ({_sql_list(NEVER_REACHED_STATES)}))
            {lock})
        RETURNING notice_id, incident_id, person_id, channel, attempts
        """  # noqa: S608 - fixed literals only
    ).bindparams(bindparam("channels", expanding=True))
    rows = session.execute(sql, {"now": now.timestamp(), "now_dt": now,
                                 "channels": sorted(channels)}).all()
    publish(session, [event_row(r, DeliveryStatus.NOT_NEEDED, r.attempts, now,
                                reason_code="correction_not_needed") for r in rows])
    return [DeliveryKey(*r[:4]) for r in rows]


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
    lease_owner: str | None = None
    gateway: str | None = None
    may_hold: bool = False
    next_attempt_at: float = 0.0
    reason_code: str | None = None
    provider: str | None = None


_ROW_COLUMNS = [DT.c[f] for f in DeliveryRow.__dataclass_fields__]


def lock_deliveries(session: Session, ids: Collection[int]) -> dict[int, DeliveryRow]:
    """The deliveries with these ids, locked until the transaction ends."""
    query = select(*_ROW_COLUMNS).where(DT.c.id.in_(list(ids)))
    # Also on SQLite, where it takes the database's write lock (services/common/db.py).
    query = query.with_for_update()
    return {r.id: DeliveryRow(*r) for r in session.execute(query)}


def lock_delivery(session: Session, notice_id: str, channel: str) -> DeliveryRow | None:
    """The delivery of `notice_id` on `channel`, locked, or None."""
    query = select(*_ROW_COLUMNS).where(DT.c.notice_id == notice_id, DT.c.channel == channel)
    # Also on SQLite, where it takes the database's write lock (services/common/db.py).
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
    reason code and lease (owner) are always written; the other fields only when given."""

    row: DeliveryRow
    status: str
    provider: str | None
    reason_code: str | None
    provider_reference: str | None | _Keep = KEEP
    next_attempt_at: float | None = None
    reference: str | None = None  # with generation: resent under a new reference
    generation: int | None = None
    gateway: str | None | _Keep = KEEP
    may_hold: bool | None = None
    # Nothing holds the reference: its gateway and message choices are made afresh next time.
    unpin: bool = False


def write_changes(session: Session, changes: Sequence[Change], now: datetime) -> None:
    """Apply the changes and publish their events."""
    if not changes:
        return
    # Group by the set of columns changed, so each group is one statement.
    groups: dict[tuple[str, ...], list[dict]] = {}
    for c in changes:
        params = {"id": c.row.id, "status": c.status, "updated_at": now, "provider": c.provider,
                  "reason_code": c.reason_code, "lease_until": None, "lease_owner": None}
        if c.provider_reference is not KEEP:
            params["provider_reference"] = c.provider_reference
        if c.may_hold is not None:
            params["may_hold"] = c.may_hold
        if c.unpin:
            params |= {"gateway": None, "content_revision": None, "says_emailed": None,
                       "says_update": None}
        elif c.gateway is not KEEP:
            params["gateway"] = c.gateway
        if c.next_attempt_at is not None:
            params["next_attempt_at"] = c.next_attempt_at
        if c.reference is not None:
            params["reference"], params["generation"] = c.reference, c.generation
        groups.setdefault(tuple(params), []).append(params)
    for params in groups.values():
        update_rows(session, DT, "id", params)
    publish(
        session,
        [event_row(c.row, c.status, c.row.attempts, now, c.provider, c.reason_code) for c in changes],
    )


# ------------------------------------------------------------------------------ status lookups


@dataclass(frozen=True, slots=True)
class LookupDue:
    """An SMS to ask its gateway about: ids and references only."""

    id: int
    notice_id: str
    channel: str
    reference: str  # ours, the generation that was sent
    provider: str  # the gateway that took it
    provider_reference: str  # its message id there
    first_attempt_at: float


def take_status_lookups(session: Session, now: float, providers: Collection[str], limit: int,
                        next_at: float, oldest: float) -> list[LookupDue]:
    """Up to `limit` SMS still 'sent' through one of `providers` whose time to be asked about
    has come (next_attempt_at: set when the gateway took it, status_lookup_after_s on), first
    attempted since `oldest`, longest waiting first. Each is stamped with `next_at` as its next
    time, in this transaction, so no other pass or replica asks at the same time (SKIP
    LOCKED); no event: nothing changed for the person."""
    query = (
        select(DT.c.id, DT.c.notice_id, DT.c.channel, DT.c.reference, DT.c.provider,
               DT.c.provider_reference, DT.c.first_attempt_at)
        .where(DT.c.status == DeliveryStatus.SENT.value, DT.c.channel == "sms",
               DT.c.next_attempt_at <= now, DT.c.provider.in_(list(providers)),
               DT.c.provider_reference.is_not(None), DT.c.first_attempt_at >= oldest)
        .order_by(DT.c.next_attempt_at)
        .limit(limit)
    )
    query = query.with_for_update(skip_locked=True) if _is_postgres(session) else query
    due = [LookupDue(*r) for r in session.execute(query)]
    if due:
        session.execute(update(DT).where(DT.c.id.in_([d.id for d in due]))
                        .values(next_attempt_at=next_at))
    return due


def count_unconfirmed_sms(session: Session, providers: Collection[str], oldest: float) -> int:
    """SMS still 'sent' through one of `providers`, first attempted before `oldest`: past the
    status lookup's age, nothing more will be asked about them."""
    query = select(func.count()).select_from(DT).where(
        DT.c.status == DeliveryStatus.SENT.value, DT.c.channel == "sms",
        DT.c.provider.in_(list(providers)), DT.c.first_attempt_at < oldest)
    return session.execute(query).scalar_one()


# ------------------------------------------------------------------------------ counting


def due_deferrals(session: Session, now: datetime, limit: int = 500) -> list[DeliveryRow]:
    """Emails a provider deferred and then said nothing more about for the whole deferral
    timeout (next_attempt_at), locked: the provider has by now delivered, bounced or lost them."""
    query = (
        select(*_ROW_COLUMNS)
        .where(DT.c.status == DeliveryStatus.SENT.value, DT.c.reason_code == "receipt-deferred",
               DT.c.next_attempt_at <= now.timestamp())
        .limit(limit)
    )
    if _is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    return [DeliveryRow(*r) for r in session.execute(query)]


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
