"""source_record_id in code point order

affected_record.source_record_id and feed_problem.source_record_id compare and sort with COLLATE
"C" on PostgreSQL, whatever the database's own collation: an agency's reconciliation pages by
source_record_id and `panui feed status` merges intake's pages with dedupe's in code point order
(services/common/reconciliation.py). A database made with a language collation (en_NZ.UTF-8,
ICU) sorted a-1, b, B, C where code point order is B, C, a-1, b. The indexes on the columns are
rebuilt in the new order by PostgreSQL itself. SQLite's default (BINARY) already is code point
order: nothing to do there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 05:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("affected_record", "source_record_id"), ("feed_problem", "source_record_id"))


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR(128) COLLATE {collation}')


def upgrade() -> None:
    _collate('"C"')


def downgrade() -> None:
    _collate('"default"')
