"""review items for contact and hold conflicts between agencies

The review queue also holds contact and hold conflicts (issue 18): a `kind` per item (existing
rows are the resolver's pairs) and the record a coordinator confirmed a contact from.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('review_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=24), nullable=False,
                                      server_default='pair'))
        batch_op.add_column(sa.Column('chosen_agency_id', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('chosen_source_record_id', sa.String(length=128),
                                      nullable=True))
    # The default filled the existing rows; the model sets the kind of every new one.
    with op.batch_alter_table('review_state', schema=None) as batch_op:
        batch_op.alter_column('kind', existing_type=sa.String(length=24), server_default=None)


def downgrade() -> None:
    # Conflict items mean nothing to the older schema's readers: they go with their columns.
    op.execute("DELETE FROM review_state WHERE kind <> 'pair'")
    with op.batch_alter_table('review_state', schema=None) as batch_op:
        batch_op.drop_column('chosen_source_record_id')
        batch_op.drop_column('chosen_agency_id')
        batch_op.drop_column('kind')
