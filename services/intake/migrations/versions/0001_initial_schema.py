"""Intake's initial schema: agencies and their API keys, incidents and enrolments, feeds and
their problems, affected-record versions, and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ["agency", "api_key", "incident", "enrolment", "feed", "feed_problem", "affected_record",
          "outbox_message"]  # in creation order: referenced tables first


def upgrade() -> None:
    op.create_table(
        "agency",
        sa.Column("agency_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agency_id"),
    )
    op.create_table(
        "api_key",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("agency_id", sa.String(length=128), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["agency_id"], ["agency.agency_id"]),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index("ix_api_key_agency_id", "api_key", ["agency_id"])
    op.create_table(
        "incident",
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("release_policy", sa.JSON(), nullable=False),
        sa.Column("channel_policy", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("incident_id"),
    )
    op.create_table(
        "enrolment",
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("agency_id", sa.String(length=128), nullable=False),
        sa.Column("expected", sa.Boolean(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_record_count", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["agency_id"], ["agency.agency_id"]),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.incident_id"]),
        sa.PrimaryKeyConstraint("incident_id", "agency_id"),
    )
    op.create_table(
        "feed",
        sa.Column("feed_id", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("agency_id", sa.String(length=128), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("warnings", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("feed_id"),
        sa.UniqueConstraint("agency_id", "idempotency_key"),
    )
    op.create_index("ix_feed_agency_id", "feed", ["agency_id"])
    op.create_index("ix_feed_incident_id", "feed", ["incident_id"])
    op.create_table(
        "feed_problem",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("feed_id", sa.String(length=64), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("source_record_id", sa.String(length=128), nullable=True),
        sa.Column("field", sa.String(length=64), nullable=True),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(["feed_id"], ["feed.feed_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_feed_problem_feed_id", "feed_problem", ["feed_id"])
    op.create_table(
        "affected_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("agency_id", sa.String(length=128), nullable=False),
        sa.Column("source_record_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.String(), nullable=False),
        sa.Column("feed_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "agency_id", "source_record_id", "version"),
    )
    op.create_index("ix_affected_record_lookup", "affected_record",
                    ["incident_id", "agency_id", "source_record_id"])
    op.create_table(
        "outbox_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    for table in reversed(TABLES):  # a table's indexes go with it
        op.drop_table(table)
