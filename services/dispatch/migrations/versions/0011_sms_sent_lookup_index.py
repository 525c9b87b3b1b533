"""sms sent lookup index

ix_delivery_sms_sent: SMS still 'sent' (no final receipt) by next_attempt_at, which for them
is when the status lookup asks their gateway next (services/dispatch/status_lookup.py). Rows
already 'sent' keep the due time of their claim (in the past): the first passes after the
upgrade ask about them, a batch at a time.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 15:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SMS_SENT = "status = 'sent' AND channel = 'sms'"


def upgrade() -> None:
    op.create_index(
        "ix_delivery_sms_sent",
        "delivery",
        ["next_attempt_at"],
        postgresql_where=sa.text(SMS_SENT),
        sqlite_where=sa.text(SMS_SENT),
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_sms_sent", "delivery")
