"""return path: messages read from a bounce mailbox, and provider webhook events applied

``mailbox_message`` remembers every message ``bounces fetch`` has read from a mailbox, keyed by the
mailbox (its URL without the password) and the message's key there (``UIDVALIDITY:UID`` for IMAP,
the UIDL for POP3), with what it was (``report`` or ``other``). It is written in the transaction
that applies the report, so a kill and a rerun apply each report exactly once, and mail that is
not a report is not read again (and never moved, deleted or marked read).

``webhook_event`` remembers each provider event applied (by the provider's event id, or for
Mailgun the signature's token), so a replayed event changes nothing.

Revision ID: 0010_return_path
Revises: 0009_proofs
Create Date: 2026-12-07 09:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_return_path"
down_revision = "0009_proofs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailbox_message",
        sa.Column("mailbox", sa.String(length=500), nullable=False),
        sa.Column("message_key", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", "message_key", name=op.f("pk_mailbox_message")),
    )
    op.create_table(
        "webhook_event",
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("event_id", sa.String(length=300), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "event_id", name=op.f("pk_webhook_event")),
    )
    op.create_index("ix_webhook_event_at", "webhook_event", ["at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_event_at", table_name="webhook_event")
    op.drop_table("webhook_event")
    op.drop_table("mailbox_message")
