"""list health: bounce_event.issue_id, and week_hold (the guard's holds on the weekly send)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Stand-ins for the data step: the migration must not import the models (they move on).
bounce_event = sa.table(
    "bounce_event", sa.column("issue_id", sa.Integer), sa.column("delivery_id", sa.Integer)
)
delivery = sa.table("delivery", sa.column("id", sa.Integer), sa.column("issue_id", sa.Integer))


def upgrade() -> None:
    with op.batch_alter_table("bounce_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("issue_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_bounce_event_issue_id_issue"),
            "issue",
            ["issue_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(batch_op.f("ix_bounce_event_issue_id"), ["issue_id"], unique=False)
    # Rows already tied to a delivery belong to that delivery's issue.
    op.execute(
        bounce_event.update()
        .where(bounce_event.c.delivery_id.is_not(None))
        .values(
            issue_id=sa.select(delivery.c.issue_id)
            .where(delivery.c.id == bounce_event.c.delivery_id)
            .scalar_subquery()
        )
    )
    op.create_table(
        "week_hold",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("send_week", sa.Date(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("hard_bounces", sa.Integer(), nullable=False),
        sa.Column("complaints", sa.Integer(), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issue.id"],
            name=op.f("fk_week_hold_issue_id_issue"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_week_hold")),
        sa.UniqueConstraint("issue_id", name=op.f("uq_week_hold_issue_id")),
    )
    with op.batch_alter_table("week_hold", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_week_hold_send_week"), ["send_week"], unique=False)
        batch_op.create_index(batch_op.f("ix_week_hold_released_at"), ["released_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("week_hold", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_week_hold_released_at"))
        batch_op.drop_index(batch_op.f("ix_week_hold_send_week"))
    op.drop_table("week_hold")
    with op.batch_alter_table("bounce_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bounce_event_issue_id"))
        batch_op.drop_constraint(batch_op.f("fk_bounce_event_issue_id_issue"), type_="foreignkey")
        batch_op.drop_column("issue_id")
