"""delivery.lease_token: the fence of a claim

Each claim writes a token of its own into the rows it leases. A process checks its leases (the
clock and this token) before a chunk goes on the wire, renewals and results are written only
where the token is still the claim's, so a process that was paused past its lease sends and
changes nothing it no longer holds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE (a nullable column): no batch copy of the delivery table.
    op.add_column("delivery", sa.Column("lease_token", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("lease_token")
