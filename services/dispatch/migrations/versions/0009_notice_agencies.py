"""notice agencies

dispatch_notice_agency: which agencies each notice names, one row per (incident, agency,
notice), written with the notice. An agency's reconciliation (its notices, and the notices
`panui feed status` looks up) reads it on its primary key instead of parsing every notice's
payload (~3.5 s per 5,000 ids at 100k records). Backfilled here from the payloads of the
notices already stored: they are the notice message's JSON, unencrypted (only the recipient
inside is sealed), so SQL can read their `agencies`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 05:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = {
    "postgresql": """
        INSERT INTO dispatch_notice_agency (incident_id, agency_id, notice_id)
        SELECT DISTINCT n.incident_id, a ->> 'agency_id', n.notice_id
        FROM dispatch_notice n,
             jsonb_array_elements(convert_from(n.payload, 'UTF8')::jsonb -> 'agencies') AS a
        ON CONFLICT DO NOTHING""",
    "sqlite": """
        INSERT OR IGNORE INTO dispatch_notice_agency (incident_id, agency_id, notice_id)
        SELECT n.incident_id, json_extract(a.value, '$.agency_id'), n.notice_id
        FROM dispatch_notice n, json_each(CAST(n.payload AS TEXT), '$.agencies') AS a""",
}


def upgrade() -> None:
    op.create_table(
        "dispatch_notice_agency",
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("agency_id", sa.String(length=128), nullable=False),
        sa.Column("notice_id", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "agency_id", "notice_id"),
    )
    op.execute(_BACKFILL[op.get_bind().dialect.name])


def downgrade() -> None:
    op.drop_table("dispatch_notice_agency")
