"""SQLAlchemy 2 models: subscriber, subscriber_event, issue, delivery.

Times are stored as aware UTC (``UTCDateTime`` normalises on the way in and out, so SQLite and
PostgreSQL behave the same). Enums are stored as lowercase strings.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from weekly_mailer.clock import utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as UTC and always returned timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    ERASED = "erased"  # forgotten: the row is a tombstone without address or name (reader_models)
    EDITOR = "editor"  # an editor who is no reader: the row only carries their proofs (proofs/)


class EventKind(enum.StrEnum):
    SUBSCRIBED = "subscribed"  # asked to join (pending)
    CONFIRMED = "confirmed"  # double opt-in completed, or added as confirmed
    UNSUBSCRIBED = "unsubscribed"
    RESUBSCRIBED = "resubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UPDATED = "updated"
    CONFIRMATION_SENT = "confirmation_sent"
    # The reader's own page (subscribers.reader): what they changed and what they were mailed.
    RENAMED = "renamed"
    MOVE_REQUESTED = "move_requested"
    MOVED = "moved"
    PAUSED = "paused"
    RESUMED = "resumed"
    DATA_SENT = "data_sent"
    LINK_SENT = "link_sent"


class IssueStatus(enum.StrEnum):
    READY = "ready"  # composed and stored, not yet enqueued
    SENDING = "sending"  # enqueued; deliveries in progress
    SENT = "sent"  # every delivery reached a final state
    SKIPPED = "skipped"  # no article for the week
    MISSED = "missed"  # the daemon was down past the grace window


class DeliveryKind(enum.StrEnum):
    ISSUE = "issue"  # one subscriber's copy of a weekly issue
    CONFIRMATION = "confirmation"  # a double opt-in e-mail (no issue)
    # The reader's own mail (no issue; subscribers.reader_mail builds them, at most 12 letters):
    MANAGE_LINK = "manage_link"  # "Lost your link?": the manage link
    MOVE_CONFIRM = "move_confirm"  # to the new address: confirm the change
    MOVE_NOTICE = "move_notice"  # to the old address: the change was made
    DATA_COPY = "data_copy"  # "Email me my data": the record and events as JSON
    PROOF = "proof"  # an editor's [Proof] of the week's issue (store.proof_models.ProofCopy)


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    SKIPPED = "skipped"


def _enum(cls: type[enum.StrEnum]) -> String:
    return String(max(len(m.value) for m in cls))


class Subscriber(Base):
    __tablename__ = "subscriber"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # Lower-cased address: the unique key, so Ann@X.org and ann@x.org are one subscriber.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(_enum(SubscriberStatus), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Consent evidence: when, how (cli, import, web…) and from where (file, IP address).
    consent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    consent_source: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(200), default="")
    bounce_count: Mapped[int] = mapped_column(Integer, default=0)
    confirmation_sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A pause (the reader's page): skipped by the weekly enqueue while ``paused_issues`` > 0
    # (one less each issue enqueued) or until ``paused_until`` passes.
    paused_issues: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    paused_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    events: Mapped[list[SubscriberEvent]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Subscriber {self.id} {self.email} {self.status}>"


class SubscriberEvent(Base):
    """The audit trail: who subscribed, confirmed, unsubscribed; when, how, from where."""

    __tablename__ = "subscriber_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="")

    subscriber: Mapped[Subscriber] = relationship(back_populates="events")


class Issue(Base):
    """One weekly issue. ``send_week`` is unique: the database allows one issue per week."""

    __tablename__ = "issue"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The Wednesday (local date of the scheduled send) that names the send week: 2026-11-25.
    send_week: Mapped[dt.date] = mapped_column(unique=True)
    status: Mapped[str] = mapped_column(_enum(IssueStatus), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(String(998), default="")
    title: Mapped[str] = mapped_column(String(998), default="")
    slug: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(Text, default="")
    source_key: Mapped[str] = mapped_column(String(500), default="", index=True)
    canonical_url: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(500), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    article: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Composed once: HTML (CSS inlined) and text with placeholders, and the archive copy.
    html_template: Mapped[str] = mapped_column(Text, default="")
    text_template: Mapped[str] = mapped_column(Text, default="")
    archive_html: Mapped[str] = mapped_column(Text, default="")
    skeleton: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Set by `issues archive`: the per-state counts of the delivery rows moved out, and when.
    archived_counts: Mapped[dict[str, int] | None] = mapped_column(JSON)
    archived_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    deliveries: Mapped[list[Delivery]] = relationship(back_populates="issue")


# The open delivery states, defined here once: the outbox (store/outbox/), the reports, the
# gauges and the partial indexes below use these. A row still to deliver is due (queued or
# deferred: claimable once its next_attempt_at has come) or leased (sending).
DUE_STATES = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)
OPEN_STATES = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)


def status_in(states: tuple[DeliveryStatus, ...], *, column: str = "status") -> str:
    """``<column> IN ('…', …)`` in SQL, in the order given: for a partial index's WHERE and
    the outbox's hand-written filters."""
    quoted = ", ".join(f"'{s.value}'" for s in states)
    return f"{column} IN ({quoted})"


_OPEN = text(status_in((*DUE_STATES, DeliveryStatus.SENDING)))  # as migration 0006 wrote it
# Every due row that is not an issue copy: confirmations and the reader's own mail (0008).
_CONFIRM_DUE = text("kind <> 'issue' AND " + status_in(DUE_STATES))
_LEASED = text("status = 'sending'")


class Delivery(Base):
    """The outbox, the ledger of who got what: one row per (issue, subscriber) for issue copies,
    and one row per confirmation e-mail (``kind`` ``confirmation``, no issue)."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id"),  # NULLs differ: confirmations are free
        # Sized for ten million rows (migration 0006; how claims use them: outbox/picking.py):
        # the per-issue counts; the open rows (due or leased), the due confirmations and the
        # leased rows, each a partial index, so rows already sent or failed are in none of them.
        Index("ix_delivery_issue_status", "issue_id", "status"),
        Index(
            "ix_delivery_open",
            "id",
            postgresql_include=["kind", "status"],  # the outbox depth gauge reads only this
            postgresql_where=_OPEN,
            sqlite_where=_OPEN,
        ),
        Index(
            "ix_delivery_confirm_due",
            "id",
            postgresql_where=_CONFIRM_DUE,
            sqlite_where=_CONFIRM_DUE,
        ),
        Index(
            "ix_delivery_leased", "lease_expires_at", postgresql_where=_LEASED, sqlite_where=_LEASED
        ),
        # The pacing's count of what went out in the last 24 hours (daily_quota, warm-up: 0009).
        Index("ix_delivery_sent_at", "sent_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(
        _enum(DeliveryKind), default=DeliveryKind.ISSUE, server_default=DeliveryKind.ISSUE.value
    )
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issue.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(_enum(DeliveryStatus), default=DeliveryStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    first_failure_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(40))  # the claim's fence
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")

    issue: Mapped[Issue | None] = relationship(back_populates="deliveries")
    subscriber: Mapped[Subscriber] = relationship()
