"""rate buckets shared by the replicas

Every service has the rate limits its replicas share (services/common/shared_buckets.py;
like the outbox and the audit log, the table is defined once): dedupe has no limit using it
yet.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 02:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_bucket",
        sa.Column("limit_name", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("limit_name", "key"),
    )
    op.create_index("ix_rate_bucket_updated_at", "rate_bucket", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_rate_bucket_updated_at", table_name="rate_bucket")
    op.drop_table("rate_bucket")
