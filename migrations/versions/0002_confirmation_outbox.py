"""confirmations in the outbox: delivery.kind, delivery.issue_id nullable

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# A stand-in for the data step: the migration must not import the models (they move on).
delivery = sa.table("delivery", sa.column("kind", sa.String(12)), sa.column("issue_id"))


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=12), server_default="issue", nullable=False)
        )
        batch_op.alter_column("issue_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_index(
            "ix_delivery_kind_claim", ["kind", "status", "next_attempt_at"], unique=False
        )


def downgrade() -> None:
    # Confirmation rows have no issue and cannot exist in the old schema: they go.
    op.execute(delivery.delete().where(delivery.c.kind != "issue"))
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_kind_claim")
        batch_op.alter_column("issue_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("kind")
