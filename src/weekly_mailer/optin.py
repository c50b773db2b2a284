"""Double opt-in and link rules for the public web: who gets a confirmation, who a link may change.

Built on :mod:`weekly_mailer.subscribers`. Functions take an open session and never commit; the
web request owns the transaction. Nothing here knows about HTTP: outcomes are plain values and
the caller decides what page to show.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import subscribers as subs
from .models import EventKind, Subscriber, SubscriberEvent, SubscriberStatus
from .tokens import Purpose, TokenSigner

DAY = dt.timedelta(days=1)


class ConfirmOutcome(enum.StrEnum):
    CONFIRMED = "confirmed"  # the link activated the subscriber just now
    ALREADY = "already"  # already active: nothing to do
    REFUSED = "refused"  # the link may not (re-)activate this subscriber


class UnsubscribeOutcome(enum.StrEnum):
    UNSUBSCRIBED = "unsubscribed"  # changed just now
    ALREADY = "already"  # already off the list (unsubscribed, bounced or complained)


def confirmations_sent_since(session: Session, sub: Subscriber, since: dt.datetime) -> int:
    """How many confirmation e-mails this subscriber was sent since ``since``."""
    if sub.id is None:
        return 0
    return (
        session.scalar(
            select(func.count())
            .select_from(SubscriberEvent)
            .where(
                SubscriberEvent.subscriber_id == sub.id,
                SubscriberEvent.kind == EventKind.CONFIRMATION_SENT.value,
                SubscriberEvent.at >= since,
            )
        )
        or 0
    )


def may_send_confirmation(
    session: Session, sub: Subscriber, *, per_day: int, now: dt.datetime
) -> bool:
    """Whether another confirmation e-mail is allowed today (at most ``per_day`` in 24 hours).

    Locks the subscriber's row first (``FOR UPDATE`` on PostgreSQL; SQLite's transactions are
    serialised already), so two simultaneous sign-ups cannot both pass the limit.
    """
    session.flush()
    session.refresh(sub, with_for_update=True)
    if sub.confirmation_sent_at is not None and sub.confirmation_sent_at > now:
        return False  # a clock that went backwards: be conservative
    return confirmations_sent_since(session, sub, now - DAY) < per_day


def note_confirmation_sent(
    session: Session, sub: Subscriber, *, source: str, detail: str = "", now: dt.datetime
) -> None:
    """Record that a confirmation e-mail goes out now (counts towards the daily limit)."""
    sub.confirmation_sent_at = now
    subs.record(session, sub, EventKind.CONFIRMATION_SENT, source=source, detail=detail, now=now)
    session.flush()


def subscriber_for_token(
    session: Session,
    signer: TokenSigner,
    purpose: Purpose,
    token: str,
    *,
    max_age: dt.timedelta | None = None,
    for_update: bool = False,
) -> Subscriber:
    """The subscriber a valid token names; :class:`~weekly_mailer.errors.TokenError` otherwise.

    A token whose subscriber is gone, or whose address digest no longer matches (a foreign or
    recycled id), is as invalid as a tampered one. ``for_update`` locks the row (PostgreSQL), so
    simultaneous POSTs of one link act once.
    """
    from .errors import TokenError

    subscriber_id, digest = signer.load(purpose, token, max_age=max_age)
    sub = session.get(Subscriber, subscriber_id, with_for_update=for_update)
    if sub is None or not signer.matches(digest, sub.email_key):
        raise TokenError("invalid link")
    return sub


def confirm_from_link(
    session: Session, sub: Subscriber, *, source: str, now: dt.datetime
) -> ConfirmOutcome:
    """Activate from a confirm link, by the rules below.

    - pending: activated (the double opt-in completes; consent time and source are recorded);
    - active: nothing changes;
    - unsubscribed or bounced: re-activated only when a confirmation was sent *after* they left
      (they asked again); an older link from before they left can never bring them back;
    - complained: never re-activated from a link.
    """
    if sub.status == SubscriberStatus.ACTIVE:
        return ConfirmOutcome.ALREADY
    if not confirm_allowed(session, sub):
        return ConfirmOutcome.REFUSED
    subs.confirm(session, sub, source=source, now=now)
    return ConfirmOutcome.CONFIRMED


def confirm_allowed(session: Session, sub: Subscriber) -> bool:
    """Whether a valid confirm link may activate this subscriber (see :func:`confirm_from_link`)."""
    if sub.status in (SubscriberStatus.PENDING, SubscriberStatus.ACTIVE):
        return True
    if sub.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED):
        if sub.confirmation_sent_at is None:
            return False
        left = session.scalar(
            select(func.max(SubscriberEvent.at)).where(
                SubscriberEvent.subscriber_id == sub.id,
                SubscriberEvent.kind.in_([EventKind.UNSUBSCRIBED.value, EventKind.BOUNCED.value]),
            )
        )
        marks = [t for t in (left, sub.unsubscribed_at) if t is not None]
        return not marks or sub.confirmation_sent_at > max(marks)
    return False


def unsubscribe_from_link(
    session: Session, sub: Subscriber, *, source: str, detail: str = "", now: dt.datetime
) -> UnsubscribeOutcome:
    """Unsubscribe from a link; idempotent. Bounced and complained addresses keep their status."""
    if sub.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        return UnsubscribeOutcome.ALREADY
    subs.unsubscribe(session, sub, source=source, detail=detail, now=now)
    return UnsubscribeOutcome.UNSUBSCRIBED


def may_resubscribe(sub: Subscriber) -> bool:
    """Whether the page after unsubscribing may offer to join again (complaints never are)."""
    return sub.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED)
