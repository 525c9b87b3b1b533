"""Dedupe's own tables: the records it has seen (latest version each), person assignments
and the notices it has released."""

from datetime import UTC, datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class RecordState(SQLModel, table=True):
    """The latest version of one agency's record, as received (personal fields still sealed)."""

    __tablename__ = "record_state"
    __table_args__ = (UniqueConstraint("incident_id", "agency_id", "source_record_id"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(index=True, max_length=128)
    agency_id: str = Field(max_length=128)
    source_record_id: str = Field(max_length=128)
    record_version: int
    message_id: str = Field(max_length=64)
    sealed: str
    data_categories: list[str] = Field(sa_column=Column(JSON, nullable=False))
    document_count: int = 0
    preferred_language: str = Field(default="en", max_length=2)
    on_hold: bool = False
    withdrawn: bool = False
    person_id: str | None = Field(default=None, index=True, max_length=128)
    updated_at: datetime = Field(default_factory=_now)


class NoticeState(SQLModel, table=True):
    """A notice (version 1) or amendment released for one person."""

    __tablename__ = "notice_state"
    __table_args__ = (UniqueConstraint("incident_id", "person_id", "version"),)

    notice_id: str = Field(primary_key=True, max_length=128)
    incident_id: str = Field(index=True, max_length=128)
    person_id: str = Field(max_length=128)
    version: int
    agency_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))
    data_categories: list[str] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=_now)


MODELS = [RecordState, NoticeState]
