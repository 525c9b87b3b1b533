"""Dispatch's own tables.

- dispatch_incident: the latest revision of each incident (content + channel policy), from the
  compacted incidents topic. No personal data.
- dispatch_notice: every notice received, as its contract JSON. The recipient inside stays
  sealed (AES-GCM, context notice|<notice_id>); nothing personal is stored in clear.
- delivery: one row per (notice, channel) with the delivery state machine
  (services/dispatch/delivery_state.py). Times the sender schedules on are epoch seconds
  (floats) so comparisons are the same on PostgreSQL and SQLite.
"""

from datetime import datetime

from sqlalchemy import Column, Index, LargeBinary, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from services.common.clock import utcnow


class DispatchIncident(SQLModel, table=True):
    __tablename__ = "dispatch_incident"

    incident_id: str = Field(primary_key=True, max_length=128)
    revision: int
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # IncidentMessage JSON
    updated_at: datetime = Field(default_factory=utcnow)


class DispatchNotice(SQLModel, table=True):
    __tablename__ = "dispatch_notice"

    notice_id: str = Field(primary_key=True, max_length=128)
    incident_id: str = Field(index=True, max_length=128)
    person_id: str = Field(max_length=128)
    version: int
    # False until the incident is known and the deliveries are planned.
    planned: bool = Field(default=False)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # NoticeMessage JSON
    created_at: datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("notice_id", "channel"),
        Index(
            "ix_delivery_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued','temporary-failure','technical-failure')"),
            sqlite_where=text("status IN ('queued','temporary-failure','technical-failure')"),
        ),
        Index(
            "ix_delivery_sending",
            "lease_until",
            postgresql_where=text("status = 'sending'"),
            sqlite_where=text("status = 'sending'"),
        ),
        Index("ix_delivery_incident_status", "incident_id", "channel", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    notice_id: str = Field(max_length=128)
    incident_id: str = Field(max_length=128)
    person_id: str = Field(max_length=128)
    notice_version: int
    channel: str = Field(max_length=16)
    status: str = Field(max_length=32)
    attempts: int = 0
    # Our idempotency reference: "<notice_id>:<channel>", plus ":g<n>" when a receipt told us
    # to send again (the gateway dedupes on reference, so a resend needs a new one).
    reference: str = Field(max_length=200)
    generation: int = 0
    provider: str | None = Field(default=None, max_length=64)
    provider_reference: str | None = Field(default=None, max_length=200)
    reason_code: str | None = Field(default=None, max_length=64)
    next_attempt_at: float = 0.0
    lease_until: float | None = None
    first_attempt_at: float | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


MODELS = [DispatchIncident, DispatchNotice, Delivery]
