"""document count may be unknown

An agency that sent no document count for a record is stored as NULL (not 0), so the notice
can say "not known" instead of "0 documents" (issue 17).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('record_state', schema=None) as batch_op:
        batch_op.alter_column('document_count', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    # Unknown counts cannot be told apart from zero in the older schema.
    op.execute("UPDATE record_state SET document_count = 0 WHERE document_count IS NULL")
    with op.batch_alter_table('record_state', schema=None) as batch_op:
        batch_op.alter_column('document_count', existing_type=sa.Integer(), nullable=False)
