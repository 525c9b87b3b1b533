"""The purge of an incident in dispatch: its notices (recipients sealed) and deliveries go; the
audit trail keeps each notice's id and its deliveries' final outcomes, nothing personal."""

from sqlalchemy import select
from sqlmodel import Session

from services.dispatch.models import Delivery, DeliveryHistory, DispatchNotice, NoticeAgency, NoticeHold


def purge_incident(session: Session, incident_id: str) -> dict:
    d, n = Delivery.__table__, DispatchNotice.__table__
    outcomes: dict[str, dict[str, str]] = {}
    for notice_id, channel, status in session.execute(
            select(d.c.notice_id, d.c.channel, d.c.status).where(d.c.incident_id == incident_id)
            .order_by(d.c.notice_id, d.c.channel)):
        outcomes.setdefault(notice_id, {})[channel] = status
    h = DeliveryHistory.__table__
    session.execute(h.delete().where(h.c.notice_id.in_(
        select(n.c.notice_id).where(n.c.incident_id == incident_id).scalar_subquery())))
    deliveries = session.execute(d.delete().where(d.c.incident_id == incident_id)).rowcount
    notices = session.execute(n.delete().where(n.c.incident_id == incident_id)).rowcount
    agencies = NoticeAgency.__table__
    session.execute(agencies.delete().where(agencies.c.incident_id == incident_id))
    hold = NoticeHold.__table__
    session.execute(hold.delete().where(hold.c.incident_id == incident_id))
    return {"notices": notices, "deliveries": deliveries, "outcomes": outcomes}
