"""Leases on the database's clock with an owner per claim (dispatch_sender), what each
reference is pinned to (gateway, content revision, the text's choices), every incident revision
kept, an index on a person's deliveries (superseding unsent versions) and one on emails a
provider deferred (their timeout).

Existing rows: claims in 'sending' keep their own lease (no owner) and are recovered when it
lapses, as before; the stored revision of each incident becomes its first kept revision.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFERRED = "status = 'sent' AND reason_code = 'receipt-deferred'"


def upgrade() -> None:
    op.create_table(
        "dispatch_incident_revision",
        sa.Column("incident_id", sa.String(length=128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "revision"),
    )
    op.execute(
        "INSERT INTO dispatch_incident_revision (incident_id, revision, payload)"
        " SELECT incident_id, revision, payload FROM dispatch_incident"
    )
    op.create_table(
        "dispatch_sender",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("alive_since", sa.Float(), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("owner"),
    )
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("gateway", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("may_hold", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("content_revision", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("says_emailed", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("says_update", sa.Boolean(), nullable=True))
        batch_op.create_index("ix_delivery_person", ["person_id", "incident_id"])
    op.create_index("ix_delivery_deferred", "delivery", ["next_attempt_at"],
                    postgresql_where=sa.text(DEFERRED), sqlite_where=sa.text(DEFERRED))
    # The default was for the rows already there; the model sets the value from now on.
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.alter_column("may_hold", server_default=None)


def downgrade() -> None:
    op.drop_index("ix_delivery_deferred", "delivery")
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.drop_index("ix_delivery_person")
        for column in ("says_update", "says_emailed", "content_revision", "may_hold", "gateway",
                       "lease_owner"):
            batch_op.drop_column(column)
    op.drop_table("dispatch_sender")
    op.drop_table("dispatch_incident_revision")
