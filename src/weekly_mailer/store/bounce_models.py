"""The ``bounce_event`` table: every classified bounce or feedback report, kept as evidence.

A row says what one report said about one recipient (``kind``: ``hard``, ``soft``, ``block``,
``expired``, ``unknown`` for bounces; ``complaint``, ``opt-out``, ``feedback`` for ARF reports),
where it came from (``source``: ``dsn``, ``arf``, ``smtp``) and why (``status``, ``code``,
``reason``). Only ``hard`` rows ever count toward ``bounce_limit``; ``block`` rows are kept per
receiving ``domain`` because they are the sender's problem, not the reader's. ``issue_id`` ties
a row to the issue it is about, for the list-health rates (:mod:`weekly_mailer.issues.health`).
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from weekly_mailer.clock import utcnow
from weekly_mailer.store.models import Base, UTCDateTime


class BounceKind(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    BLOCK = "block"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    COMPLAINT = "complaint"  # ARF abuse, fraud, virus
    OPT_OUT = "opt-out"  # ARF opt-out
    FEEDBACK = "feedback"  # ARF auth-failure, not-spam and others: recorded only


class BounceSource(enum.StrEnum):
    DSN = "dsn"  # a bounce message: RFC 3464 or an MTA's own text
    ARF = "arf"  # an RFC 5965 feedback report
    SMTP = "smtp"  # the reply to our own SMTP transaction


class BounceEvent(Base):
    __tablename__ = "bounce_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(10), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriber.id", ondelete="SET NULL"), index=True
    )
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("delivery.id", ondelete="SET NULL"), index=True
    )
    # The issue the report is about: from the delivery when known, else from the Message-ID of
    # the original message the report quotes (compose.links). The list-health guard counts by it.
    issue_id: Mapped[int | None] = mapped_column(
        ForeignKey("issue.id", ondelete="SET NULL"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(320), default="")
    domain: Mapped[str] = mapped_column(String(255), default="", index=True)
    status: Mapped[str] = mapped_column(String(20), default="")
    code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(10), default=BounceSource.DSN.value)
    # The report's own Message-ID: a report read twice (an mbox, stdin) is applied once.
    message_id: Mapped[str] = mapped_column(String(998), default="", index=True)
    # Whether the report was tied to a message we sent this reader (a signed VERP address, a
    # quoted Message-ID of ours naming them, a verified provider event) or ``bounce_trust`` is
    # ``any``; an untrusted row is evidence only: it changed nobody and counts in no rate.
    trusted: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    def __repr__(self) -> str:
        return f"<BounceEvent {self.id} {self.kind} {self.recipient}>"


class DomainPause(Base):
    """Sending to one receiving domain paused after a burst of blocks (one row per domain, the
    latest pause): its waiting rows were moved to ``until`` (``outbox.pause_domain``)."""

    __tablename__ = "domain_pause"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    until: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    blocks: Mapped[int] = mapped_column(Integer, default=0)  # blocks that made (and kept) it
    reason: Mapped[str] = mapped_column(Text, default="")  # the latest block's reply
    rows_moved: Mapped[int] = mapped_column(Integer, default=0)

    def __repr__(self) -> str:
        return f"<DomainPause {self.domain} until {self.until:%Y-%m-%d %H:%M}>"


class MailboxMessage(Base):
    """One message ``bounces fetch`` has read from a bounce mailbox: ``mailbox`` is its URL
    without the password, ``message_key`` the message's key there (``UIDVALIDITY:UID`` for IMAP,
    the UIDL for POP3), ``outcome`` what it was (``report`` or ``other``). Written in the
    transaction that applies the report, so each report is applied exactly once."""

    __tablename__ = "mailbox_message"

    mailbox: Mapped[str] = mapped_column(String(500), primary_key=True)
    message_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<MailboxMessage {self.mailbox} {self.message_key} {self.outcome}>"


class WebhookEvent(Base):
    """One provider event applied from a webhook (``provider``: ``ses``, ``mailgun``,
    ``postmark``, ``sendgrid``; ``event_id``: the provider's id, for Mailgun the signature's
    token): a replay of it changes nothing."""

    __tablename__ = "webhook_event"

    provider: Mapped[str] = mapped_column(String(20), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    def __repr__(self) -> str:
        return f"<WebhookEvent {self.provider} {self.event_id}>"
