"""The reader's own page in the store: ``address_change`` (a move to another address, confirmed
there) and ``erasure`` (the audit of a "forget me", with a keyed hash of the address).

An ``address_change`` row is the consent record of a move: the old and the new address, when it
was asked for and when it was confirmed at the new address; ``confirm_delivery_id`` and
``notice_delivery_id`` are the outbox rows that mail the confirmation link (to the new address)
and the notice (to the old one). An ``erasure`` row keeps no address: ``address_hash`` is an
HMAC of the lower-cased address under ``secret_key`` (``subscribers.forget.address_hash``), so a
later import of the same address is recognised and kept off the list.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from weekly_mailer.clock import utcnow
from weekly_mailer.store.models import Base, UTCDateTime


class AddressChange(Base):
    __tablename__ = "address_change"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    old_email: Mapped[str] = mapped_column(String(320))
    new_email: Mapped[str] = mapped_column(String(320))
    new_email_key: Mapped[str] = mapped_column(String(320), index=True)
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    confirm_delivery_id: Mapped[int | None] = mapped_column(Integer, index=True)
    notice_delivery_id: Mapped[int | None] = mapped_column(Integer, index=True)


class Erasure(Base):
    __tablename__ = "erasure"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_hash: Mapped[str] = mapped_column(String(64), index=True)
    erased_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    erased_by: Mapped[str] = mapped_column(String(200), default="")
    # The tombstone left in ``subscriber`` (its delivery rows keep the issues' counts).
    subscriber_id: Mapped[int | None] = mapped_column(Integer)
