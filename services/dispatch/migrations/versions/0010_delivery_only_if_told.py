"""delivery only_if_told

delivery.only_if_told: the delivery is sent only if an earlier version of the person's notice
reached them (a sent-in-error correction), set when it is planned, so the check before each
claim is one statement on a partial index of the few such rows that are due, instead of
decoding the payloads of every due follow-up and looking at only the first 500 by id.
Backfilled from the notices already stored (their JSON is unencrypted; only the recipient
inside is sealed): the corrections of kind `sent_in_error`, the one kind that has nothing to
say to a person no earlier version reached (policy.correction_has_anything_to_say).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE_ONLY_IF_TOLD = "only_if_told AND status IN ('queued','temporary-failure','technical-failure')"

_BACKFILL = {
    "postgresql": """
        UPDATE delivery SET only_if_told = TRUE
        WHERE notice_id IN (
            SELECT n.notice_id FROM dispatch_notice n
            WHERE convert_from(n.payload, 'UTF8')::jsonb -> 'correction' ->> 'kind'
                  = 'sent_in_error')""",
    "sqlite": """
        UPDATE delivery SET only_if_told = 1
        WHERE notice_id IN (
            SELECT n.notice_id FROM dispatch_notice n
            WHERE json_extract(CAST(n.payload AS TEXT), '$.correction.kind') = 'sent_in_error')""",
}


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.add_column(
            sa.Column("only_if_told", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(_BACKFILL[op.get_bind().dialect.name])
    op.create_index(
        "ix_delivery_due_only_if_told",
        "delivery",
        ["channel", "next_attempt_at"],
        postgresql_where=sa.text(DUE_ONLY_IF_TOLD),
        sqlite_where=sa.text(DUE_ONLY_IF_TOLD),
    )
    # The default was for the rows already there; the model sets the value from now on.
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.alter_column("only_if_told", server_default=None)


def downgrade() -> None:
    op.drop_index("ix_delivery_due_only_if_told", table_name="delivery")
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.drop_column("only_if_told")
