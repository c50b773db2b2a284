"""domain_pause: sending to a receiving domain paused after a burst of blocks

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "domain_pause",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocks", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("rows_moved", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_pause")),
        sa.UniqueConstraint("domain", name=op.f("uq_domain_pause_domain")),
    )
    with op.batch_alter_table("domain_pause", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_domain_pause_until"), ["until"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("domain_pause", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_domain_pause_until"))
    op.drop_table("domain_pause")
