"""source_record_id in code point order

record_state.source_record_id and review_state's record ids compare and sort with COLLATE "C" on
PostgreSQL, whatever the database's own collation: an agency's reconciliation pages by
source_record_id and `panui feed status` merges dedupe's pages with intake's in code point order
(services/common/reconciliation.py). A database made with a language collation (en_NZ.UTF-8,
ICU) sorted a-1, b, B, C where code point order is B, C, a-1, b. The indexes on the columns are
rebuilt in the new order by PostgreSQL itself. SQLite's default (BINARY) already is code point
order: nothing to do there.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 05:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("record_state", "source_record_id"), ("review_state", "a_source_record_id"),
           ("review_state", "b_source_record_id"), ("review_state", "chosen_source_record_id"))


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR(128) COLLATE {collation}')


def upgrade() -> None:
    _collate('"C"')


def downgrade() -> None:
    _collate('"default"')
