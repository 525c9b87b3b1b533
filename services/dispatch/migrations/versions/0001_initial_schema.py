"""Dispatch's initial schema: incidents (latest revision), notices received, one delivery per
(notice, channel) with the indexes the sender polls on, and the outbox.

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

TABLES = ["dispatch_incident", "dispatch_notice", "delivery", "outbox_message"]
DUE = "status IN ('queued','temporary-failure','technical-failure')"
SENDING = "status = 'sending'"


def upgrade() -> None:
    op.create_table(
        "dispatch_incident",
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("incident_id"),
    )
    op.create_table(
        "dispatch_notice",
        sa.Column("notice_id", sa.String(length=128), nullable=False),
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("person_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("planned", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("notice_id"),
    )
    op.create_index("ix_dispatch_notice_incident_id", "dispatch_notice", ["incident_id"])
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.String(length=128), nullable=False),
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("person_id", sa.String(length=128), nullable=False),
        sa.Column("notice_version", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("provider_reference", sa.String(length=200), nullable=True),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("first_attempt_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("notice_id", "channel"),
    )
    # Partial indexes: the sender's two polls (due rows, expired leases) stay small.
    op.create_index("ix_delivery_due", "delivery", ["next_attempt_at"],
                    postgresql_where=sa.text(DUE), sqlite_where=sa.text(DUE))
    op.create_index("ix_delivery_sending", "delivery", ["lease_until"],
                    postgresql_where=sa.text(SENDING), sqlite_where=sa.text(SENDING))
    op.create_index("ix_delivery_incident_status", "delivery", ["incident_id", "channel", "status"])
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
