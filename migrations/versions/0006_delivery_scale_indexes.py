"""delivery indexes for ten million rows; issue.archived_counts and archived_at

The two full claim indexes (issue_id, status, next_attempt_at) and (kind, status,
next_attempt_at) held every row ever sent and were written on every enqueue. They become:
(issue_id, status) for the per-issue counts; partial indexes on the id of open rows (queued,
deferred, sending; with kind and status, for the outbox depth gauge) and of due confirmations,
which claims walk in id order, and on the lease expiry of the rows being sent. Archiving keeps an issue's counts on the issue row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OPEN = sa.text("status IN ('queued', 'deferred', 'sending')")
CONFIRM_DUE = sa.text("kind = 'confirmation' AND status IN ('queued', 'deferred')")
LEASED = sa.text("status = 'sending'")


def upgrade() -> None:
    op.drop_index("ix_delivery_claim", table_name="delivery")
    op.drop_index("ix_delivery_kind_claim", table_name="delivery")
    op.create_index("ix_delivery_issue_status", "delivery", ["issue_id", "status"])
    op.create_index(
        "ix_delivery_open",
        "delivery",
        ["id"],
        postgresql_include=["kind", "status"],
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )
    op.create_index(
        "ix_delivery_confirm_due",
        "delivery",
        ["id"],
        postgresql_where=CONFIRM_DUE,
        sqlite_where=CONFIRM_DUE,
    )
    op.create_index(
        "ix_delivery_leased",
        "delivery",
        ["lease_expires_at"],
        postgresql_where=LEASED,
        sqlite_where=LEASED,
    )
    # Plain ALTER TABLE, not a batch copy: on SQLite, dropping the old issue table of a batch
    # copy would cascade to every delivery row.
    op.add_column("issue", sa.Column("archived_counts", sa.JSON(), nullable=True))
    op.add_column("issue", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("issue", "archived_at")  # SQLite >= 3.35 drops a column in place
    op.drop_column("issue", "archived_counts")
    op.drop_index("ix_delivery_leased", table_name="delivery")
    op.drop_index("ix_delivery_confirm_due", table_name="delivery")
    op.drop_index("ix_delivery_open", table_name="delivery")
    op.drop_index("ix_delivery_issue_status", table_name="delivery")
    op.create_index("ix_delivery_kind_claim", "delivery", ["kind", "status", "next_attempt_at"])
    op.create_index("ix_delivery_claim", "delivery", ["issue_id", "status", "next_attempt_at"])
