"""completion reconciliation

The withdrawn records a completion announces, and what dedupe found missing (release.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 11:26:24.652811
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing incidents: no withdrawn counts announced, nothing found missing yet (the
    # owner reconciles on its next batch or tick).
    with op.batch_alter_table('incident_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('completed_withdrawn', sa.JSON(), nullable=False,
                                      server_default='{}'))
        batch_op.add_column(sa.Column('missing', sa.JSON(), nullable=False, server_default='{}'))
    with op.batch_alter_table('incident_state', schema=None) as batch_op:
        batch_op.alter_column('completed_withdrawn', server_default=None)
        batch_op.alter_column('missing', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('incident_state', schema=None) as batch_op:
        batch_op.drop_column('missing')
        batch_op.drop_column('completed_withdrawn')
