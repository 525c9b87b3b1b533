"""What every service keeps about its staff: the append-only audit log of privileged acts, and
the staff tokens revoked before their expiry. Both tables are in each service's own database.

An audit entry says who (actor: a principal's name or an agency id, and its kind), did what
(action, e.g. "incident.create"), to which incident and objects (ids only), when. Never a
personal value: ids and names of staff and agencies only. Append-only: the store has no update
or delete for it, and the migration adds triggers refusing UPDATE, DELETE (and, on PostgreSQL,
TRUNCATE) of its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import JSON, Column, select
from sqlmodel import Field, Session, SQLModel

from services.common.clock import utcnow

# The privileged acts recorded, by service (the audit endpoint documents them).
ACTIONS = (
    "incident.create", "agency.enrol", "key.issue", "key.revoke",  # intake
    "review.decide", "incident.release",  # dedupe
    "unreachable.download", "notice.check", "notice.lookup",  # dispatch
    "token.revoke",  # every service
    "token.issue",  # intake
)


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=128)  # a principal's name, or an agency id
    actor_kind: str = Field(max_length=16)  # "coordinator" (staff), "agency" or "public"
    action: str = Field(max_length=64)
    incident_id: str | None = Field(default=None, max_length=128, index=True)
    object_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class RevokedToken(SQLModel, table=True):
    __tablename__ = "revoked_token"

    token_id: str = Field(primary_key=True, max_length=128)
    revoked_at: datetime = Field(default_factory=utcnow)
    revoked_by: str = Field(max_length=128)


SHARED_MODELS: tuple[type[SQLModel], ...] = (AuditEntry, RevokedToken)


@dataclass(frozen=True, slots=True)
class Act:
    """A privileged act about to be recorded with the change it describes."""

    actor: str
    actor_kind: str
    action: str
    incident_id: str | None = None
    object_ids: Sequence[str] = ()


def record(session: Session, act: Act) -> None:
    session.add(AuditEntry(actor=act.actor, actor_kind=act.actor_kind, action=act.action,
                           incident_id=act.incident_id, object_ids=[str(o) for o in act.object_ids]))


def entries(session: Session, incident_ids: frozenset[str] | None, incident_id: str | None,
            after_id: int, limit: int) -> list[dict]:
    """Entries after `after_id`, oldest first; only those of `incident_ids` (None: all)."""
    query = select(AuditEntry).where(AuditEntry.id > after_id).order_by(AuditEntry.id).limit(limit)
    if incident_id is not None:
        query = query.where(AuditEntry.incident_id == incident_id)
    if incident_ids is not None:
        query = query.where(AuditEntry.incident_id.in_(sorted(incident_ids)))
    return [{"id": e.id, "at": e.at, "actor": e.actor, "actor_kind": e.actor_kind,
             "action": e.action, "incident_id": e.incident_id, "object_ids": e.object_ids}
            for e in session.scalars(query)]


def revoke_token(session: Session, token_id: str, by: str) -> bool:
    """Revoke a staff token; False if it was revoked already."""
    if session.get(RevokedToken, token_id) is not None:
        return False
    session.add(RevokedToken(token_id=token_id, revoked_by=by))
    return True


def is_revoked(session: Session, token_id: str) -> bool:
    return session.get(RevokedToken, token_id) is not None

