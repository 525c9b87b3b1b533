"""What stays of a closed and purged incident in every service: an audit trail without
personal data (table `retention_event`) — who closed it and when, and, at the purge, what was
deleted (counts; in dispatch the notice ids and their delivery outcomes).

Until the audit log of issue 18's identities work exists, this is each service's own record of
close and purge; it carries actor, action, incident, time and object ids so it can be joined
to that log.
"""

from datetime import datetime

from sqlalchemy import JSON, Column, select
from sqlmodel import Field, Session, SQLModel

from services.common.clock import utcnow


class RetentionEvent(SQLModel, table=True):
    __tablename__ = "retention_event"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(index=True, max_length=128)
    action: str = Field(max_length=16)  # closed | purged
    actor: str | None = Field(default=None, max_length=128)  # who asked (never a secret)
    at: datetime = Field(default_factory=utcnow)
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def record(session: Session, incident_id: str, action: str, detail: dict,
           actor: str | None = None, at: datetime | None = None) -> None:
    session.add(RetentionEvent(incident_id=incident_id, action=action, actor=actor,
                               at=at or utcnow(), detail=detail))


def happened(session: Session, incident_id: str, action: str) -> bool:
    """Whether this service recorded the action already (a replayed lifecycle message)."""
    return session.scalars(select(RetentionEvent.id).where(
        RetentionEvent.incident_id == incident_id, RetentionEvent.action == action).limit(1)
    ).first() is not None


def purged_of(session: Session, incident_ids: set[str]) -> set[str]:
    if not incident_ids:
        return set()
    return set(session.scalars(select(RetentionEvent.incident_id).where(
        RetentionEvent.incident_id.in_(incident_ids), RetentionEvent.action == "purged")))


def events(session: Session, incident_id: str) -> list[RetentionEvent]:
    return list(session.scalars(select(RetentionEvent).where(
        RetentionEvent.incident_id == incident_id).order_by(RetentionEvent.id)))
