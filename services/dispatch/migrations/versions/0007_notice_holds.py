"""notice holds

dispatch_notice_hold: whether dedupe holds a notified person under s 116 now (notice-hold
messages on notices.v1, issue 16), so the call centre says "held — do not disclose" instead
of showing the person as simply notified. Empty at first: dedupe announces holds from now on.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 02:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatch_notice_hold",
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("person_id", sa.String(length=128), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "person_id"),
    )


def downgrade() -> None:
    op.drop_table("dispatch_notice_hold")
