"""What coordinators read: delivery progress per incident, and who must be reached by post or
by the s 115 public notice."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select, text
from sqlmodel import Session

from services.dispatch.delivery_state import DeliveryStatus
from services.dispatch.models import Delivery, DispatchNotice

DT = Delivery.__table__
NT = DispatchNotice.__table__


@dataclass(frozen=True)
class DeliveryCounts:
    incident_id: str
    notices: int
    awaiting_incident: int  # stored, not planned: the incident has not arrived yet
    by_channel: dict[str, dict[str, int]]  # channel -> status -> deliveries


def summary(session: Session, incident_id: str) -> DeliveryCounts:
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
    return DeliveryCounts(
        incident_id=incident_id,
        notices=sum(planned.values()),
        awaiting_incident=planned.get(False, 0),
        by_channel=by_channel,
    )


@dataclass(frozen=True)
class Unreachable:
    channel: str  # 'postal' (the mail-out) or 'none' (the public notice)
    notice_payload: bytes  # NoticeMessage JSON, recipient still sealed


def unreachable(session: Session, incident_id: str) -> list[Unreachable]:
    """Deliveries needing a postal mail-out or the s 115 public notice, in the order they were
    created, with the notice (still sealed) to read the person's details from — for the newest
    version of each person's notice only (one line per person)."""
    newer = DT.alias("newer")
    rows = session.execute(
        select(DT.c.channel, NT.c.payload)
        .join(NT, NT.c.notice_id == DT.c.notice_id)
        .where(
            DT.c.incident_id == incident_id,
            ((DT.c.channel == "postal") & (DT.c.status == DeliveryStatus.QUEUED.value))
            | ((DT.c.channel == "none") & (DT.c.status == DeliveryStatus.UNREACHABLE.value)),
            ~exists().where(newer.c.person_id == DT.c.person_id,
                            newer.c.incident_id == DT.c.incident_id,
                            newer.c.notice_version > DT.c.notice_version),
        )
        .order_by(DT.c.id)
    ).all()
    return [Unreachable(channel, payload) for channel, payload in rows]


@dataclass(frozen=True)
class CommissionerCounts:
    """Dispatch's part of the Privacy Commissioner's report (services/common/report.py):
    counts for the incident and per agency the notices cover; no personal data."""

    incident: dict[str, int]
    by_agency: dict[str, dict[str, int]]
    milestones: dict[str, object]  # milestone -> datetime


def commissioner_counts(session: Session, incident_id: str) -> CommissionerCounts:
    from collections import Counter

    import orjson

    from services.dispatch.models import DeliveryHistory

    incident: Counter = Counter()
    by_agency: dict[str, Counter] = {}
    agencies_of: dict[str, list[str]] = {}
    persons: set[str] = set()
    agency_persons: dict[str, set[str]] = {}
    corrections: set[str] = set()
    for notice_id, person_id, version, payload in session.execute(
            select(NT.c.notice_id, NT.c.person_id, NT.c.version, NT.c.payload)
            .where(NT.c.incident_id == incident_id)):
        message = orjson.loads(payload)
        ids = sorted({a["agency_id"] for a in message["agencies"]})
        agencies_of[notice_id] = ids
        persons.add(person_id)
        correction = (message.get("correction") or {}).get("kind")
        if correction:  # a correction notice (retractions): its deliveries are counted apart
            corrections.add(notice_id)
        kind = (f"notices.corrections.{correction}" if correction else
                "notices.amendments" if version > 1 else "notices.first")
        incident[kind] += 1
        for agency_id in ids:
            by_agency.setdefault(agency_id, Counter())[kind] += 1
            agency_persons.setdefault(agency_id, set()).add(person_id)
    incident["persons.notified"] = len(persons)
    for agency_id, people in agency_persons.items():
        by_agency[agency_id]["persons.notified"] = len(people)
    for notice_id, channel, status in session.execute(
            select(DT.c.notice_id, DT.c.channel, DT.c.status).where(DT.c.incident_id == incident_id)):
        measure = "unreachable" if channel == "none" else f"deliveries.{channel}.{status}"
        incident[measure] += 1
        if notice_id in corrections:
            incident[f"corrections.{channel}.{status}"] += 1
        for agency_id in agencies_of.get(notice_id, ()):
            by_agency[agency_id][measure] += 1
    ht = DeliveryHistory.__table__
    in_incident = ht.c.notice_id.in_(select(NT.c.notice_id).where(NT.c.incident_id == incident_id)
                                     .scalar_subquery())
    first_notice = session.execute(select(text("min(created_at)")).select_from(NT)
                                   .where(NT.c.incident_id == incident_id)).scalar()
    first_sent, last_delivered = session.execute(
        select(
            select(ht.c.at).where(in_incident, ht.c.status == "sent").order_by(ht.c.at).limit(1)
            .scalar_subquery(),
            select(ht.c.at).where(in_incident, ht.c.status == "delivered")
            .order_by(ht.c.at.desc()).limit(1).scalar_subquery())).one()
    milestones = {k: v for k, v in (("notices.first_received", first_notice),
                                    ("deliveries.first_sent", first_sent),
                                    ("deliveries.last_delivered", last_delivered)) if v is not None}
    return CommissionerCounts(dict(incident), {a: dict(c) for a, c in by_agency.items()}, milestones)


@dataclass(frozen=True)
class StoredNotice:
    """A notice as stored (NoticeMessage JSON, still sealed) and what its deliveries were
    pinned to at their first attempt (None: not sent yet — rendered as it would be now)."""

    payload: bytes
    content_revision: int | None
    says_emailed: bool | None
    says_update: bool | None


def stored_notice(session: Session, incident_id: str, notice_id: str) -> StoredNotice | None:
    payload = session.execute(select(NT.c.payload).where(
        NT.c.notice_id == notice_id, NT.c.incident_id == incident_id)).scalar_one_or_none()
    if payload is None:
        return None
    pinned = {row.channel: row for row in session.execute(
        select(DT.c.channel, DT.c.content_revision, DT.c.says_emailed, DT.c.says_update)
        .where(DT.c.notice_id == notice_id))}
    email, sms = pinned.get("email"), pinned.get("sms")
    first = next((row for row in (email, sms) if row is not None and row.content_revision), None)
    return StoredNotice(
        payload=bytes(payload), content_revision=first.content_revision if first else None,
        says_emailed=sms.says_emailed if sms is not None else None,
        says_update=first.says_update if first else None)
