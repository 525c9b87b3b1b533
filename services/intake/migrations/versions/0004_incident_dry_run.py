"""An incident's dry-run flag (issue 14): a rehearsal, fixed at creation, whose notices dispatch
delivers only to the local simulated gateways.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The existing incidents are real ones; the default is only for them (the model sets it).
    with op.batch_alter_table("incident") as batch:
        batch.add_column(sa.Column("dry_run", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("incident") as batch:
        batch.alter_column("dry_run", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("incident") as batch:
        batch.drop_column("dry_run")
