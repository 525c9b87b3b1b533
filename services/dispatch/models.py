"""Dispatch's own tables: one delivery per (notice, channel)."""

from datetime import UTC, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


class Delivery(SQLModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("notice_id", "channel"),)

    id: int | None = Field(default=None, primary_key=True)
    notice_id: str = Field(index=True, max_length=128)
    incident_id: str = Field(index=True, max_length=128)
    person_id: str = Field(max_length=128)
    notice_version: int
    channel: str = Field(max_length=16)
    status: str = Field(max_length=32)
    attempts: int = 0
    provider: str | None = Field(default=None, max_length=64)
    provider_reference: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


MODELS = [Delivery]
