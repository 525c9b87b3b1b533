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
