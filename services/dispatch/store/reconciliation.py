"""An agency's reconciliation rows (services/common/reconciliation.py): the notices that name the
agency, with their reference and each delivery's channel and status — ids and statuses only."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session

from services.common.batching import chunks
from services.common.db import one_of
from services.dispatch.models import Delivery, DispatchNotice, NoticeAgency

DT = Delivery.__table__
NT = DispatchNotice.__table__
NAT = NoticeAgency.__table__


@dataclass(frozen=True, slots=True)
class NoticeOutcome:
    notice_id: str
    version: int
    reference: str | None
    deliveries: list[tuple[str, str]]  # (channel, status), oldest first


def notices_by_id(session: Session, incident_id: str, agency_id: str,
                  notice_ids: list[str]) -> list[NoticeOutcome]:
    """Of these notices of the incident, those naming the agency (the others, and ids that are
    no notice, are left out alike), by notice id: what `panui feed status` asks for the notices
    a stretch of dedupe's records names. Primary-key lookups of dispatch_notice_agency (no
    payload is read), so a page costs its own size."""
    found = []
    for chunk in chunks(sorted(set(notice_ids)), 5000):  # SQLite: at most 32,766 parameters
        found += session.execute(
            select(NT.c.notice_id, NT.c.version, NT.c.reference_code)
            .join(NAT, NAT.c.notice_id == NT.c.notice_id)
            .where(NAT.c.incident_id == incident_id, NAT.c.agency_id == agency_id,
                   one_of(session, NAT.c.notice_id, chunk))).all()
    found.sort(key=lambda row: row.notice_id)
    return _with_deliveries(session, found)


def _with_deliveries(session: Session, mine: list) -> list[NoticeOutcome]:
    """The agency's notice rows, each with its deliveries (channel, status), oldest first."""
    deliveries: dict[str, list[tuple[str, str]]] = {row.notice_id: [] for row in mine}
    for chunk in chunks(list(deliveries), 5000):
        for notice_id, channel, status in session.execute(
                select(DT.c.notice_id, DT.c.channel, DT.c.status)
                .where(one_of(session, DT.c.notice_id, chunk)).order_by(DT.c.id)):
            deliveries[notice_id].append((channel, status))
    return [NoticeOutcome(row.notice_id, row.version, row.reference_code, deliveries[row.notice_id])
            for row in mine]


def notice_outcomes(session: Session, incident_id: str, agency_id: str, after: str,
                    limit: int) -> tuple[list[NoticeOutcome], str | None]:
    """The incident's next `limit` notices naming the agency after `after` by notice id (a
    walk of dispatch_notice_agency's primary key); the cursor to go on from, or None."""
    rows = session.execute(
        select(NT.c.notice_id, NT.c.version, NT.c.reference_code)
        .join(NAT, NAT.c.notice_id == NT.c.notice_id)
        .where(NAT.c.incident_id == incident_id, NAT.c.agency_id == agency_id,
               NAT.c.notice_id > after)
        .order_by(NAT.c.notice_id).limit(limit + 1)).all()
    page, more = rows[:limit], len(rows) > limit
    return _with_deliveries(session, page), (page[-1].notice_id if more else None)
