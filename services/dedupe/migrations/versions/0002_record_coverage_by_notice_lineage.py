"""record coverage by notice lineage

Which notice lineage covered each record, at which record version (services/dedupe/lineage.py:
a person is told about the records a notice covered). Existing rows: a record of a person
already notified was covered by that person's lineage at its current version (the best the
old schema can say); every other record is covered by nothing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:34:00.029345
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('record_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('told_lineage', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('told_version', sa.Integer(), nullable=False,
                                      server_default='0'))
    records = sa.table('record_state', sa.column('incident_id'), sa.column('person_id'),
                       sa.column('withdrawn'), sa.column('record_version'),
                       sa.column('told_lineage'), sa.column('told_version'))
    persons = sa.table('person_state', sa.column('incident_id'), sa.column('person_id'),
                       sa.column('notice_person_id'), sa.column('notified_version'))
    told = (sa.select(persons.c.notice_person_id)
            .where(persons.c.incident_id == records.c.incident_id,
                   persons.c.person_id == records.c.person_id,
                   persons.c.notified_version > 0)
            .scalar_subquery())
    op.execute(records.update()
               .where(records.c.withdrawn == sa.false(), records.c.person_id.is_not(None),
                      told.is_not(None))
               .values(told_lineage=told, told_version=records.c.record_version))
    with op.batch_alter_table('record_state', schema=None) as batch_op:
        batch_op.alter_column('told_version', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('record_state', schema=None) as batch_op:
        batch_op.drop_column('told_version')
        batch_op.drop_column('told_lineage')
