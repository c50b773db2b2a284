"""The proofs of a week's issue and the editors' decisions about them (migration 0009_proofs).

- ``proof``: the week's issue composed as it will go out (``proofs.make``), stored without
  enqueueing it, with the hash of its content and the summary mailed at the top of the proof.
  A new row each time the content changes (a feed item edited, a file replaced).
- ``proof_copy``: one editor's copy of a proof: the message built for them (the outbox row of
  kind ``proof`` is delivered from these bytes, with the envelope sender and DKIM of any row).
- ``proof_decision``: an approval or a veto of a week, by whom, when, why, through which door
  (``cli`` or ``link``); an approval holds only for the ``content_hash`` it was given for.

See :mod:`weekly_mailer.proofs`.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from weekly_mailer.clock import utcnow
from weekly_mailer.store.models import Base, UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class Decision(enum.StrEnum):
    APPROVE = "approve"
    VETO = "veto"


class Proof(Base):
    __tablename__ = "proof"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    send_week: Mapped[dt.date] = mapped_column(index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    fire_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # when the week goes out
    subject: Mapped[str] = mapped_column(String(998), default="")
    title: Mapped[str] = mapped_column(String(998), default="")
    source: Mapped[str] = mapped_column(Text, default="")
    source_key: Mapped[str] = mapped_column(String(500), default="")
    skeleton: Mapped[bytes | None] = mapped_column(LargeBinary)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProofCopy(Base):
    __tablename__ = "proof_copy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proof_id: Mapped[int] = mapped_column(ForeignKey("proof.id", ondelete="CASCADE"), index=True)
    editor: Mapped[str] = mapped_column(String(320))
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("delivery.id", ondelete="SET NULL"), index=True
    )
    message_id: Mapped[str] = mapped_column(String(998), default="")
    message: Mapped[bytes] = mapped_column(LargeBinary)


class ProofDecision(Base):
    __tablename__ = "proof_decision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    send_week: Mapped[dt.date] = mapped_column(index=True)
    proof_id: Mapped[int | None] = mapped_column(ForeignKey("proof.id", ondelete="SET NULL"))
    content_hash: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(10))
    by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    via: Mapped[str] = mapped_column(String(20), default="cli")
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


def proof_copy_for(session: Session, delivery_id: int) -> ProofCopy | None:
    """The proof copy an outbox row of kind ``proof`` delivers."""
    query = select(ProofCopy).where(ProofCopy.delivery_id == delivery_id)
    return session.scalars(query).first()
