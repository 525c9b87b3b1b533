"""Intake's own tables: agencies and their API keys, incidents and enrolments, feeds and
their problems, and every accepted version of every affected record (personal fields sealed)."""

from datetime import datetime

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from services.common.clock import utcnow
from services.common.db import code_point_string


class Agency(SQLModel, table=True):
    __tablename__ = "agency"

    agency_id: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    """An agency's API key. Only a hash of the secret is kept; the key is shown once."""

    __tablename__ = "api_key"

    key_id: str = Field(primary_key=True, max_length=32)
    agency_id: str = Field(foreign_key="agency.agency_id", index=True, max_length=128)
    secret_sha256: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class Incident(SQLModel, table=True):
    __tablename__ = "incident"

    incident_id: str = Field(primary_key=True, max_length=128)
    revision: int = 1
    title: str = Field(max_length=200)
    content: dict = Field(sa_column=Column(JSON, nullable=False))
    release_policy: dict = Field(sa_column=Column(JSON, nullable=False))
    channel_policy: dict = Field(sa_column=Column(JSON, nullable=False))
    # A rehearsal: dispatch delivers its notices only to the local simulated gateways.
    dry_run: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Retention: closed by the coordinator (no more feeds), purged at purge_after (its
    # records deleted and data keys destroyed; this row, enrolments and feed counts remain).
    closed_at: datetime | None = None
    purge_after: datetime | None = None
    purged_at: datetime | None = None


class Enrolment(SQLModel, table=True):
    """An agency enrolled in an incident; `expected` agencies gate the release."""

    __tablename__ = "enrolment"

    incident_id: str = Field(foreign_key="incident.incident_id", primary_key=True, max_length=128)
    agency_id: str = Field(foreign_key="agency.agency_id", primary_key=True, max_length=128)
    expected: bool = True
    completed_at: datetime | None = None
    completed_record_count: int | None = None


class Feed(SQLModel, table=True):
    __tablename__ = "feed"
    __table_args__ = (UniqueConstraint("agency_id", "idempotency_key"),)

    feed_id: str = Field(primary_key=True, max_length=64)
    incident_id: str = Field(index=True, max_length=128)
    agency_id: str = Field(index=True, max_length=128)
    idempotency_key: str | None = Field(default=None, max_length=128)
    format: str = Field(max_length=16)
    received: int = 0
    accepted: int = 0
    unchanged: int = 0
    rejected: int = 0
    warnings: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class FeedProblem(SQLModel, table=True):
    __tablename__ = "feed_problem"

    id: int | None = Field(default=None, primary_key=True)
    feed_id: str = Field(foreign_key="feed.feed_id", index=True, max_length=64)
    line: int
    source_record_id: str | None = Field(default=None, max_length=128, sa_type=code_point_string(128))
    field: str | None = Field(default=None, max_length=64)
    severity: str = Field(max_length=8)
    code: str = Field(max_length=64)
    message: str = Field(max_length=500)


class AffectedRecord(SQLModel, table=True):
    """One accepted version of one agency's record. Versions are never updated in place."""

    __tablename__ = "affected_record"
    __table_args__ = (
        UniqueConstraint("incident_id", "agency_id", "source_record_id", "version"),
        Index("ix_affected_record_lookup", "incident_id", "agency_id", "source_record_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(max_length=128)
    agency_id: str = Field(max_length=128)
    source_record_id: str = Field(max_length=128, sa_type=code_point_string(128))  # paged by it
    version: int
    fingerprint: str = Field(max_length=64)  # keyed hash of the clean record: "same content?"
    sealed: str
    feed_id: str = Field(max_length=64)
    received_at: datetime = Field(default_factory=utcnow)
    withdrawn_at: datetime | None = None


MODELS = [Agency, ApiKey, Incident, Enrolment, Feed, FeedProblem, AffectedRecord]
