"""partition owner fence

Who holds each affected-records partition's state, by claim epoch: every write checks it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:51:07.046023
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('partition_owner',
    sa.Column('partition', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('partition')
    )


def downgrade() -> None:
    op.drop_table('partition_owner')
