"""proofs: the week's issue composed ahead of its send and mailed to the editors; approvals and
vetoes bound to the issue's content

``proof`` (the composed issue, not enqueued, its content hash and summary), ``proof_copy`` (each
editor's message, delivered through the outbox as a row of kind ``proof``), ``proof_decision``
(approve or veto, by whom, when, why). A subscriber may have the status ``editor`` (an editor who
is no reader) and a delivery the kind ``proof``: both are strings, so no column changes.

Revision ID: 0009_proofs
Revises: 0008
Create Date: 2026-12-07 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_proofs"
down_revision = "0009_pacing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proof",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("send_week", sa.Date(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("title", sa.String(length=998), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_key", sa.String(length=500), nullable=False),
        sa.Column("skeleton", sa.LargeBinary(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proof")),
    )
    op.create_index("ix_proof_send_week", "proof", ["send_week"])
    op.create_table(
        "proof_copy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proof_id", sa.Integer(), nullable=False),
        sa.Column("editor", sa.String(length=320), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["proof_id"], ["proof.id"], name=op.f("fk_proof_copy_proof_id_proof"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["delivery.id"], name=op.f("fk_proof_copy_delivery_id_delivery"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proof_copy")),
    )  # fmt: skip
    op.create_index("ix_proof_copy_proof_id", "proof_copy", ["proof_id"])
    op.create_index("ix_proof_copy_delivery_id", "proof_copy", ["delivery_id"])
    op.create_table(
        "proof_decision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("send_week", sa.Date(), nullable=False),
        sa.Column("proof_id", sa.Integer(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["proof_id"], ["proof.id"], name=op.f("fk_proof_decision_proof_id_proof"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proof_decision")),
    )  # fmt: skip
    op.create_index("ix_proof_decision_send_week", "proof_decision", ["send_week"])


def downgrade() -> None:
    # Proof mail and editor-only rows have no kind or status before 0009: they go.
    op.execute("DELETE FROM delivery WHERE kind = 'proof'")
    op.execute("DELETE FROM subscriber WHERE status = 'editor'")
    op.drop_index("ix_proof_decision_send_week", table_name="proof_decision")
    op.drop_table("proof_decision")
    op.drop_index("ix_proof_copy_delivery_id", table_name="proof_copy")
    op.drop_index("ix_proof_copy_proof_id", table_name="proof_copy")
    op.drop_table("proof_copy")
    op.drop_index("ix_proof_send_week", table_name="proof")
    op.drop_table("proof")
