"""retraction decisions and correction notices

A notice can be a correction (issue 16's retractions): `notice_state.correction` says which
kind (sent_in_error | agency_not_involved); a retraction review item keeps the id of the
correction notice its decision made.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 22:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('notice_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('correction', sa.String(length=24), nullable=True))
    with op.batch_alter_table('review_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('correction_notice_id', sa.String(length=128),
                                      nullable=True))


def downgrade() -> None:
    # Retraction items mean nothing to the older schema's readers: they go with the columns.
    op.execute("DELETE FROM review_state WHERE kind = 'retraction'")
    with op.batch_alter_table('review_state', schema=None) as batch_op:
        batch_op.drop_column('correction_notice_id')
    with op.batch_alter_table('notice_state', schema=None) as batch_op:
        batch_op.drop_column('correction')
