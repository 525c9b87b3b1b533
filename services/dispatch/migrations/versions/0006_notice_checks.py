"""notice checks and delivery history

What the "is this notice genuine?" check and the call centre read (issue 16): each notice's
printed reference (unique), the data key its digests are made with, and the keyed digests of the
person's dates of birth. Notices stored before get the reference they printed (the legacy code,
or the one their message carries) and no date-of-birth digests (they cannot be confirmed online;
the call centre still finds them by reference). And dispatch_delivery_history: every
delivery event as written to the outbox, which forgets it once published (the call centre's
delivery history).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 19:30:00.000000
"""

from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from alembic import op

from services.common.references import legacy_reference

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dispatch_notice") as batch:
        batch.add_column(sa.Column("reference_code", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("check_key_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("dob_checks", sa.JSON(), nullable=True))
    notices = sa.table("dispatch_notice", sa.column("notice_id", sa.String),
                       sa.column("payload", sa.LargeBinary), sa.column("reference_code", sa.String),
                       sa.column("check_key_id", sa.String), sa.column("dob_checks", sa.JSON))
    bind = op.get_bind()
    for notice_id, payload in bind.execute(sa.select(notices.c.notice_id, notices.c.payload)).all():
        message = orjson.loads(payload)
        bind.execute(
            notices.update().where(notices.c.notice_id == notice_id).values(
                reference_code=message.get("reference_code") or legacy_reference(notice_id),
                check_key_id=str(message.get("sealed", "..")).split(".")[1] or None,
                dob_checks=message.get("dob_checks") or [],
            )
        )
    with op.batch_alter_table("dispatch_notice") as batch:
        batch.alter_column("dob_checks", existing_type=sa.JSON(), nullable=False)
    op.create_index("ix_dispatch_notice_reference_code", "dispatch_notice", ["reference_code"],
                    unique=True)
    op.create_table(
        "dispatch_delivery_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dispatch_delivery_history_notice_id", "dispatch_delivery_history",
                    ["notice_id"])


def downgrade() -> None:
    op.drop_index("ix_dispatch_delivery_history_notice_id", table_name="dispatch_delivery_history")
    op.drop_table("dispatch_delivery_history")
    op.drop_index("ix_dispatch_notice_reference_code", table_name="dispatch_notice")
    with op.batch_alter_table("dispatch_notice") as batch:
        batch.drop_column("dob_checks")
        batch.drop_column("check_key_id")
        batch.drop_column("reference_code")
