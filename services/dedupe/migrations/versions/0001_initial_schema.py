"""Dedupe's initial schema: incidents as dedupe sees them, the latest version of each record,
persons and their release state, released notices, the review queue, and the outbox.

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

TABLES = ["incident_state", "record_state", "person_state", "notice_state", "review_state",
          "outbox_message"]


def upgrade() -> None:
    op.create_table(
        "incident_state",
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("agency_names", sa.JSON(), nullable=False),
        sa.Column("expected_agency_ids", sa.JSON(), nullable=False),
        sa.Column("release_policy", sa.JSON(), nullable=False),
        sa.Column("completed", sa.JSON(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("release_reason", sa.String(length=16), nullable=True),
        sa.Column("manual_release_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("incident_id"),
    )
    op.create_table(
        "record_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("agency_id", sa.String(length=128), nullable=False),
        sa.Column("source_record_id", sa.String(length=128), nullable=False),
        sa.Column("record_version", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.String(), nullable=False),
        sa.Column("data_categories", sa.JSON(), nullable=False),
        sa.Column("document_count", sa.Integer(), nullable=False),
        sa.Column("preferred_language", sa.String(length=2), nullable=False),
        sa.Column("on_hold", sa.Boolean(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.Column("person_id", sa.String(length=128), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "agency_id", "source_record_id"),
    )
    op.create_index("ix_record_state_incident_id", "record_state", ["incident_id"])
    op.create_index("ix_record_state_person", "record_state", ["incident_id", "person_id"])
    op.create_table(
        "person_state",
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("person_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dirty", sa.Boolean(), nullable=False),
        sa.Column("notice_person_id", sa.String(length=128), nullable=True),
        sa.Column("notified_version", sa.Integer(), nullable=False),
        sa.Column("notified_agency_ids", sa.JSON(), nullable=False),
        sa.Column("notified_categories", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "person_id"),
    )
    op.create_index("ix_person_state_dirty", "person_state", ["dirty"])
    op.create_table(
        "notice_state",
        sa.Column("notice_id", sa.String(length=128), nullable=False),
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("person_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("agency_ids", sa.JSON(), nullable=False),
        sa.Column("data_categories", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("notice_id"),
        sa.UniqueConstraint("incident_id", "person_id", "version"),
    )
    op.create_index("ix_notice_state_incident_id", "notice_state", ["incident_id"])
    op.create_table(
        "review_state",
        sa.Column("review_id", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("a_agency_id", sa.String(length=128), nullable=False),
        sa.Column("a_source_record_id", sa.String(length=128), nullable=False),
        sa.Column("b_agency_id", sa.String(length=128), nullable=False),
        sa.Column("b_source_record_id", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("review_id"),
    )
    op.create_index("ix_review_state_incident_id", "review_state", ["incident_id"])
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
