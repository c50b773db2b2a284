"""the reader's page: pauses, address changes, erasures; the reader's mail is claimed like a
confirmation

``subscriber.paused_issues`` and ``paused_until`` (a pause: the weekly enqueue skips the
reader); ``address_change`` (a move to another address, the consent record of both);
``erasure`` (the audit of a "forget me", a keyed hash of the address and no address). The
partial index of due confirmations becomes the index of every due row that is not an issue copy
(confirmations and the reader's own mail: the manage link, a move's confirmation and notice, the
data copy), which the claim takes first because a person is waiting.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

NOTICE_DUE = sa.text("kind <> 'issue' AND status IN ('queued', 'deferred')")
CONFIRM_DUE = sa.text("kind = 'confirmation' AND status IN ('queued', 'deferred')")


def upgrade() -> None:
    # Plain ALTER TABLE (a default and a nullable column): no batch copy of the subscriber table.
    op.add_column(
        "subscriber",
        sa.Column("paused_issues", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("subscriber", sa.Column("paused_until", sa.DateTime(timezone=True)))
    op.create_table(
        "address_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("old_email", sa.String(length=320), nullable=False),
        sa.Column("new_email", sa.String(length=320), nullable=False),
        sa.Column("new_email_key", sa.String(length=320), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirm_delivery_id", sa.Integer(), nullable=True),
        sa.Column("notice_delivery_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name=op.f("fk_address_change_subscriber_id_subscriber"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_address_change")),
    )
    for column in ("subscriber_id", "new_email_key", "confirm_delivery_id", "notice_delivery_id"):
        op.create_index(f"ix_address_change_{column}", "address_change", [column])
    op.create_table(
        "erasure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_by", sa.String(length=200), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasure")),
    )
    op.create_index("ix_erasure_address_hash", "erasure", ["address_hash"])
    op.drop_index("ix_delivery_confirm_due", table_name="delivery")
    op.create_index(
        "ix_delivery_confirm_due",
        "delivery",
        ["id"],
        postgresql_where=NOTICE_DUE,
        sqlite_where=NOTICE_DUE,
    )


def downgrade() -> None:
    # The reader's own mail has no kind before 0008: its rows go (they are mail, not history).
    op.execute(
        "DELETE FROM delivery WHERE kind IN "
        "('manage_link', 'move_confirm', 'move_notice', 'data_copy')"
    )
    op.drop_index("ix_delivery_confirm_due", table_name="delivery")
    op.create_index(
        "ix_delivery_confirm_due",
        "delivery",
        ["id"],
        postgresql_where=CONFIRM_DUE,
        sqlite_where=CONFIRM_DUE,
    )
    op.drop_index("ix_erasure_address_hash", table_name="erasure")
    op.drop_table("erasure")
    for column in ("subscriber_id", "new_email_key", "confirm_delivery_id", "notice_delivery_id"):
        op.drop_index(f"ix_address_change_{column}", table_name="address_change")
    op.drop_table("address_change")
    op.drop_column("subscriber", "paused_until")  # SQLite >= 3.35 drops a column in place
    op.drop_column("subscriber", "paused_issues")
