"""Double opt-in and link rules for the public web: who gets a confirmation, who a link may change.

Built on :mod:`weekly_mailer.subscribers`. Functions take an open session and never commit; the
web request owns the transaction. Nothing here knows about HTTP: outcomes are plain values and
the caller decides what page to show.
"""

from __future__ import annotations

import datetime as dt
import enum
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from weekly_mailer import subscribers as subs
from weekly_mailer.store.models import EventKind, Subscriber, SubscriberEvent, SubscriberStatus
from weekly_mailer.store.signups import signup_bindings
from weekly_mailer.tokens import Purpose, TokenSigner

DAY = dt.timedelta(days=1)
FAILED_SOURCE = "web:mailer"
FAILED_DETAIL = "confirmation_failed"
_FAILED_RE = re.compile(rf"^{FAILED_DETAIL} event=(\d+)\b")


class ConfirmOutcome(enum.StrEnum):
    CONFIRMED = "confirmed"  # the link activated the subscriber just now
    ALREADY = "already"  # already active: nothing to do
    REFUSED = "refused"  # the link may not (re-)activate this subscriber


class UnsubscribeOutcome(enum.StrEnum):
    UNSUBSCRIBED = "unsubscribed"  # changed just now
    ALREADY = "already"  # already off the list (unsubscribed, bounced or complained)


def confirmations_sent_since(session: Session, sub: Subscriber, since: dt.datetime) -> int:
    """How many confirmation e-mails this subscriber was sent since ``since``.

    A confirmation the mailer gave up on (see :func:`note_confirmation_failed`) does not count.
    """
    if sub.id is None:
        return 0
    sent = session.scalars(
        select(SubscriberEvent.id).where(
            SubscriberEvent.subscriber_id == sub.id,
            SubscriberEvent.kind == EventKind.CONFIRMATION_SENT.value,
            SubscriberEvent.at >= since,
        )
    ).all()
    if not sent:
        return 0
    failures = session.scalars(  # always recorded after the event they undo, so also >= since
        select(SubscriberEvent.detail).where(
            SubscriberEvent.subscriber_id == sub.id,
            SubscriberEvent.kind == EventKind.UPDATED.value,
            SubscriberEvent.source == FAILED_SOURCE,
            SubscriberEvent.at >= since,
        )
    ).all()
    undone = {int(m.group(1)) for m in map(_FAILED_RE.match, failures) if m}
    return len(set(sent) - undone)


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
) -> int:
    """Record that a confirmation e-mail goes out now (counts towards the daily limit).

    Returns the id of the ``confirmation_sent`` event, for :func:`note_confirmation_failed`.
    """
    sub.confirmation_sent_at = now
    subs.record(session, sub, EventKind.CONFIRMATION_SENT, source=source, detail=detail, now=now)
    session.flush()
    event_id = session.scalar(
        select(func.max(SubscriberEvent.id)).where(
            SubscriberEvent.subscriber_id == sub.id,
            SubscriberEvent.kind == EventKind.CONFIRMATION_SENT.value,
        )
    )
    assert event_id is not None
    return int(event_id)


def note_confirmation_failed(
    session: Session,
    subscriber_id: int,
    *,
    event_id: int,
    sent_at: dt.datetime,
    previous_sent_at: dt.datetime | None,
    reason: str,
    now: dt.datetime,
) -> bool:
    """Undo the daily limit for a confirmation e-mail that never went out.

    Records an ``updated`` event (source ``web:mailer``, detail ``confirmation_failed
    event=<id>: <reason>``) that takes the ``confirmation_sent`` event out of the count, and
    puts ``confirmation_sent_at`` back to what it was if nothing has changed it since. Returns
    ``False`` when the subscriber is gone (nothing to undo).
    """
    sub = session.get(Subscriber, subscriber_id, with_for_update=True)
    if sub is None:
        return False
    if sub.confirmation_sent_at == sent_at:
        sub.confirmation_sent_at = previous_sent_at
    detail = f"{FAILED_DETAIL} event={event_id}: {reason}"[:500]
    subs.record(session, sub, EventKind.UPDATED, source=FAILED_SOURCE, detail=detail, now=now)
    session.flush()
    return True


def undo_confirmation_sent(
    session: Session,
    subscriber_id: int,
    *,
    queued_at: dt.datetime,
    reason: str,
    now: dt.datetime,
) -> bool:
    """A confirmation e-mail queued at ``queued_at`` finally failed (not a 5xx refusal): take it
    out of the daily limit, see :func:`note_confirmation_failed`.

    Its ``confirmation_sent`` event is the subscriber's last one recorded at or before
    ``queued_at`` (both are written in the one transaction that queues the e-mail);
    ``confirmation_sent_at`` goes back to the time of the one before it that still counts.
    Returns ``False`` when there is nothing to undo.
    """
    found = session.execute(
        select(SubscriberEvent.id, SubscriberEvent.at)
        .where(
            SubscriberEvent.subscriber_id == subscriber_id,
            SubscriberEvent.kind == EventKind.CONFIRMATION_SENT.value,
            SubscriberEvent.at <= queued_at,
        )
        .order_by(SubscriberEvent.at.desc(), SubscriberEvent.id.desc())
        .limit(1)
    ).first()
    if found is None:
        return False
    event_id, sent_at = found
    undone = {
        int(m.group(1))
        for m in map(
            _FAILED_RE.match,
            session.scalars(
                select(SubscriberEvent.detail).where(
                    SubscriberEvent.subscriber_id == subscriber_id,
                    SubscriberEvent.kind == EventKind.UPDATED.value,
                    SubscriberEvent.source == FAILED_SOURCE,
                )
            ),
        )
        if m
    }
    if event_id in undone:
        return False
    earlier = session.scalars(
        select(SubscriberEvent.at)
        .where(
            SubscriberEvent.subscriber_id == subscriber_id,
            SubscriberEvent.kind == EventKind.CONFIRMATION_SENT.value,
            SubscriberEvent.id != event_id,
            SubscriberEvent.id.not_in(undone),
            SubscriberEvent.at <= sent_at,
        )
        .order_by(SubscriberEvent.at.desc())
        .limit(1)
    ).first()
    return note_confirmation_failed(
        session,
        subscriber_id,
        event_id=int(event_id),
        sent_at=sent_at,
        previous_sent_at=earlier,
        reason=reason,
        now=now,
    )


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
    from weekly_mailer.errors import TokenError

    subscriber_id, digest = signer.load(purpose, token, max_age=max_age)
    sub = session.get(Subscriber, subscriber_id, with_for_update=for_update)
    if sub is None:
        raise TokenError("invalid link")
    bound = signup_binding(session, sub.id) if purpose == Purpose.CONFIRM else ""
    if not signer.matches(digest, sub.email_key, bound_to=bound):
        raise TokenError("invalid link")
    return sub




def signup_binding(session: Session, subscriber_id: int) -> str:
    """The sign-up a confirm link is sent for (``store.signups``: the one definition); a
    confirm token is bound to it (``TokenSigner.make(bound_to=...)``)."""
    return signup_bindings(session, [subscriber_id]).get(subscriber_id, "")


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
