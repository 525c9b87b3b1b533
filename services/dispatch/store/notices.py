"""dispatch_notice: every notice as received (contract JSON, recipient still sealed), and
whether its deliveries are planned yet (False while its incident is unknown)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlmodel import Session

from services.common.crypto import envelope_key_id
from services.common.db import insert_new_rows
from services.common.messages import NoticeMessage, decode_notice
from services.common.references import legacy_reference
from services.dispatch.models import Delivery, DispatchNotice, NoticeAgency

NT = DispatchNotice.__table__
NAT = NoticeAgency.__table__


@dataclass(frozen=True, slots=True)
class NewNotice:
    notice: NoticeMessage
    payload: bytes  # the message as received
    planned: bool  # its deliveries are created in the same transaction


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_notices(session: Session, notices: Sequence[NewNotice], now: datetime) -> set[str]:
    """Store notices not stored yet (a replay changes nothing). Returns the ids inserted."""
    rows = [
        {
            "notice_id": n.notice.notice_id,
            "incident_id": n.notice.incident_id,
            "person_id": n.notice.person_id,
            "version": n.notice.version,
            "planned": n.planned,
            "payload": n.payload,
            "created_at": now,
            "reference_code": n.notice.reference_code or legacy_reference(n.notice.notice_id),
            "check_key_id": envelope_key_id(n.notice.sealed)[1],
            "dob_checks": list(n.notice.dob_checks),
        }
        for n in notices
    ]
    inserted = insert_new_rows(session, NT, rows, "notice_id")
    # The agencies each names, for reconciliation (a notice stored before is left as it was).
    insert_new_rows(session, NAT, [
        {"incident_id": n.notice.incident_id, "agency_id": agency_id, "notice_id": n.notice.notice_id}
        for n in notices if n.notice.notice_id in inserted
        for agency_id in sorted({a.agency_id for a in n.notice.agencies})], "notice_id")
    return inserted


def incidents_awaited(session: Session, incident_id: str | None = None) -> list[str]:
    """Incidents that notices are waiting for (all, or just `incident_id`)."""
    query = select(NT.c.incident_id).where(NT.c.planned.is_(False)).distinct()
    if incident_id is not None:
        query = query.where(NT.c.incident_id == incident_id)
    return list(session.execute(query).scalars())


def claim_unplanned(session: Session, incident_ids: Collection[str], limit: int) -> list[NoticeMessage]:
    """Mark up to `limit` waiting notices of these incidents planned and return them; the caller
    plans their deliveries in the same transaction. Safe to run concurrently: each notice is
    claimed by flipping `planned` (SKIP LOCKED on PostgreSQL)."""
    if not incident_ids:
        return []
    batch = (
        select(NT.c.notice_id)
        .where(NT.c.planned.is_(False), NT.c.incident_id.in_(list(incident_ids)))
        .limit(limit)
    )
    if _is_postgres(session):
        batch = batch.with_for_update(skip_locked=True)
    claim = (
        update(NT)
        .where(NT.c.notice_id.in_(batch.scalar_subquery()), NT.c.planned.is_(False))
        .values(planned=True)
        .returning(NT.c.payload)
    )
    return [decode_notice(p) for p in session.execute(claim).scalars()]


def notice_payloads(session: Session, notice_ids: Collection[str]) -> dict[str, bytes]:
    """notice_id -> the notice as received (NoticeMessage JSON, recipient sealed)."""
    if not notice_ids:
        return {}
    return dict(
        session.execute(
            select(NT.c.notice_id, NT.c.payload).where(NT.c.notice_id.in_(list(notice_ids)))
        ).all()
    )


def lock_notices(session: Session, notice_ids: Collection[str]) -> None:
    """Lock these notices (PostgreSQL; in id order, so two transactions cannot deadlock) until
    the transaction ends. Whoever decides a notice's next channel holds it: two channels that
    fail at once in two transactions each see the other's failure, never neither."""
    if notice_ids and _is_postgres(session):
        session.execute(
            select(NT.c.notice_id).where(NT.c.notice_id.in_(sorted(set(notice_ids))))
            .order_by(NT.c.notice_id).with_for_update()
        ).all()


@dataclass(frozen=True, slots=True)
class CheckRow:
    """What the genuine-notice check reads about the notice printed with a reference."""

    notice_id: str
    incident_id: str
    person_id: str
    key_id: str | None
    dob_checks: list[str]


def by_reference(session: Session, reference_code: str) -> CheckRow | None:
    """The notice printed with this reference, or None (one indexed look-up either way)."""
    row = session.execute(
        select(NT.c.notice_id, NT.c.incident_id, NT.c.person_id, NT.c.check_key_id,
               NT.c.dob_checks).where(NT.c.reference_code == reference_code)
    ).first()
    return None if row is None else CheckRow(row[0], row[1], row[2], row[3], list(row[4] or []))


def notice_payload(session: Session, notice_id: str) -> bytes | None:
    return session.execute(select(NT.c.payload).where(NT.c.notice_id == notice_id)).scalar()


def pinned_revision(session: Session, notice_id: str) -> int | None:
    """The incident revision the notice's first rendered delivery was pinned to (what the
    person was sent), or None when nothing has been rendered yet."""
    table = Delivery.__table__
    return session.execute(
        select(table.c.content_revision).where(table.c.notice_id == notice_id,
                                               table.c.content_revision.is_not(None))
        .order_by(table.c.id).limit(1)
    ).scalar()
