"""What the call centre reads about one notice: its deliveries with what each was pinned to,
their history, and the person's other versions. Ids, statuses and times only; the notice
itself (recipient sealed) comes from store/notices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from services.dispatch.delivery_state import TOLD_STATES
from services.dispatch.models import Delivery, DeliveryHistory, DispatchNotice

DT, HT, NT = Delivery.__table__, DeliveryHistory.__table__, DispatchNotice.__table__


@dataclass(frozen=True, slots=True)
class DeliveryView:
    channel: str
    status: str
    attempts: int
    provider: str | None
    reason_code: str | None
    content_revision: int | None  # what it was (or will be) rendered with; None: not yet
    says_emailed: bool | None
    says_update: bool | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    channel: str
    status: str
    attempt: int
    provider: str | None
    reason_code: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class VersionView:
    notice_id: str
    version: int
    reference_code: str | None
    received_at: datetime


def deliveries(session: Session, notice_id: str) -> list[DeliveryView]:
    query = (select(DT.c.channel, DT.c.status, DT.c.attempts, DT.c.provider, DT.c.reason_code,
                    DT.c.content_revision, DT.c.says_emailed, DT.c.says_update, DT.c.created_at,
                    DT.c.updated_at)
             .where(DT.c.notice_id == notice_id).order_by(DT.c.id))
    return [DeliveryView(*row) for row in session.execute(query)]


def history(session: Session, notice_id: str) -> list[HistoryEntry]:
    query = (select(HT.c.channel, HT.c.status, HT.c.attempt, HT.c.provider, HT.c.reason_code,
                    HT.c.at).where(HT.c.notice_id == notice_id).order_by(HT.c.id))
    return [HistoryEntry(*row) for row in session.execute(query)]


def versions(session: Session, incident_id: str, person_id: str) -> list[VersionView]:
    """Every version of the person's notice in the incident, oldest first."""
    query = (select(NT.c.notice_id, NT.c.version, NT.c.reference_code, NT.c.created_at)
             .where(NT.c.incident_id == incident_id, NT.c.person_id == person_id)
             .order_by(NT.c.version))
    return [VersionView(*row) for row in session.execute(query)]


@dataclass(frozen=True, slots=True)
class EarlierSend:
    """The newest earlier version of a person's notice that a gateway took."""

    notice_id: str
    reference_code: str | None
    channel: str
    first_attempt_at: float | None  # epoch seconds: when it was first handed over


def told_before(session: Session, incident_id: str, person_id: str,
                version: int) -> EarlierSend | None:
    """What a correction (`version`) corrects, as the person got it: the newest earlier version
    on its way, sent or delivered (TOLD_STATES, what says_update counts) — delivered first, then
    the first handed over. None when no earlier version got that far."""
    row = session.execute(
        select(DT.c.notice_id, NT.c.reference_code, DT.c.channel, DT.c.first_attempt_at)
        .join(NT, NT.c.notice_id == DT.c.notice_id)
        .where(DT.c.incident_id == incident_id, DT.c.person_id == person_id,
               DT.c.notice_version < version, DT.c.channel != "none",
               DT.c.status.in_([s.value for s in TOLD_STATES]))
        .order_by(DT.c.notice_version.desc(), (DT.c.status == "delivered").desc(),
                  DT.c.first_attempt_at, DT.c.id)
        .limit(1)).first()
    return EarlierSend(*row) if row is not None else None
