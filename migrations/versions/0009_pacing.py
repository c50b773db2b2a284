"""pacing: delivery.sent_at indexed, and the warm-up's sending days (pacing_day)

``daily_quota`` counts the messages sent in the last 24 hours at every claim: an index range
on ``sent_at``. ``pacing_day`` holds the warm-up's sending days (``warmup_start``,
``warmup_factor``).

Revision ID: 0009_pacing
Revises: 0008
Create Date: 2026-12-07 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_pacing"
down_revision = "0009_trust"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_delivery_sent_at", "delivery", ["sent_at"], unique=False)
    op.create_table(
        "pacing_day",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("allowance", sa.Integer(), nullable=False),
        sa.Column("covers", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacing_day")),
    )
    with op.batch_alter_table("pacing_day", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pacing_day_started_at"), ["started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pacing_day", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pacing_day_started_at"))
    op.drop_table("pacing_day")
    op.drop_index("ix_delivery_sent_at", table_name="delivery")
