"""Retention: incident data keys (data_key: one per incident and purpose, wrapped by the
purpose's KEK; wrapped NULL once destroyed), tombstones in the outbox (payload NULL) and the
audit trail that outlives a purge (retention_event).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_key",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("kek_id", sa.String(length=64), nullable=False),
        sa.Column("wrapped", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index("ix_data_key_incident_id", "data_key", ["incident_id"])
    op.create_table(
        "retention_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_retention_event_incident_id", "retention_event", ["incident_id"])
    with op.batch_alter_table("outbox_message") as batch:
        batch.alter_column("payload", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM outbox_message WHERE payload IS NULL")
    with op.batch_alter_table("outbox_message") as batch:
        batch.alter_column("payload", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_index("ix_retention_event_incident_id", table_name="retention_event")
    op.drop_table("retention_event")
    op.drop_index("ix_data_key_incident_id", table_name="data_key")
    op.drop_table("data_key")
