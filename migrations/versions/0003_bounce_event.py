"""bounce_event: every classified bounce and feedback report

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounce_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name=op.f("fk_bounce_event_subscriber_id_subscriber"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
            name=op.f("fk_bounce_event_delivery_id_delivery"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_event")),
    )
    with op.batch_alter_table("bounce_event", schema=None) as batch_op:
        for column in ("at", "kind", "subscriber_id", "delivery_id", "domain", "message_id"):
            batch_op.create_index(batch_op.f(f"ix_bounce_event_{column}"), [column], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("bounce_event", schema=None) as batch_op:
        for column in ("message_id", "domain", "delivery_id", "subscriber_id", "kind", "at"):
            batch_op.drop_index(batch_op.f(f"ix_bounce_event_{column}"))
    op.drop_table("bounce_event")
