"""What stays of a closed and purged incident in every service: an audit trail without
personal data (table `retention_event`) — who closed it and when, and, at the purge, what was
deleted (counts; in dispatch the notice ids and their delivery outcomes).

Until the audit log of issue 18's identities work exists, this is each service's own record of
close and purge; it carries actor, action, incident, time and object ids so it can be joined
to that log.

A purge and a write of the same incident never interleave (`hold` / `hold_for_purge`): every
transaction that writes an incident's rows from a message (a batch of records, a notice, a
tick) first takes a shared lock on the incident and drops what belongs to a purged one; the
purge takes the same lock exclusively. Whichever commits second sees the other: a batch after
the purge finds the incident purged (its messages are dropped and counted, never stored); a
purge after the batch deletes what the batch wrote. (PostgreSQL advisory transaction locks;
SQLite, for development, has one writer at a time anyway.)
"""

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import JSON, Column, select, text
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


def _lock(session: Session, incident_id: str, shared: bool) -> None:
    if session.get_bind().dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        session.execute(text(f"SELECT {fn}(hashtextextended(:k, 0))"), {"k": f"purge|{incident_id}"})


def hold(session: Session, incident_ids: Iterable[str]) -> set[str]:
    """Keep these incidents from being purged until the transaction ends, and return those
    purged already (the caller drops their messages). Shared locks, taken in a fixed order."""
    ids = sorted(set(incident_ids))
    for incident_id in ids:
        _lock(session, incident_id, shared=True)
    return purged_of(session, set(ids))


def hold_for_purge(session: Session, incident_id: str) -> None:
    """The purge's lock: waits for every transaction holding the incident, and keeps new ones
    waiting until the purge commits (they then find it purged)."""
    _lock(session, incident_id, shared=False)


def purged_of(session: Session, incident_ids: set[str]) -> set[str]:
    if not incident_ids:
        return set()
    return set(session.scalars(select(RetentionEvent.incident_id).where(
        RetentionEvent.incident_id.in_(incident_ids), RetentionEvent.action == "purged")))


def events(session: Session, incident_id: str) -> list[RetentionEvent]:
    return list(session.scalars(select(RetentionEvent).where(
        RetentionEvent.incident_id == incident_id).order_by(RetentionEvent.id)))
