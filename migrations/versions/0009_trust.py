"""trust: ``bounce_event.trusted``, whether the report was tied to a message we sent

A report is trusted when it came to a signed VERP address, quoted one of our Message-IDs whose
signature names the reader, arrived as a verified provider event, or when ``bounce_trust`` is
``any``. Untrusted rows are evidence only: they change nobody and count in no rate. Rows
recorded before this revision were believed when they were recorded: they stay trusted.

Revision ID: 0009_trust
Revises: 0008
Create Date: 2026-12-07 07:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_trust"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ALTER TABLE (a column with a default): no batch copy of bounce_event.
    op.add_column(
        "bounce_event",
        sa.Column("trusted", sa.Boolean(), server_default=sa.true(), nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("bounce_event") as batch:
        batch.drop_column("trusted")
