"""rate buckets shared by the replicas

The "is this notice genuine?" check's token buckets (services/common/shared_buckets.py), one row
per (limit, key): per client, keyed by a keyed digest of its address (never the address), and
one for everyone. In the database so that every replica draws on the same buckets: per replica
the global limit was the configured one times the replica count.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 02:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
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
