"""mailout batches

Letters for people reached by post, handed to a print house in batches (issue 17).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mailout_batch",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("letters", sa.Integer(), nullable=False),
        sa.Column("large_print", sa.Boolean(), nullable=False),
        sa.Column("letter_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("batch_id"),
    )
    op.create_index("ix_mailout_batch_incident_id", "mailout_batch", ["incident_id"])


def downgrade() -> None:
    op.drop_index("ix_mailout_batch_incident_id", table_name="mailout_batch")
    op.drop_table("mailout_batch")
