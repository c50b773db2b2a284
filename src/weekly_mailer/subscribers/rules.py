"""Subscriber rules: validate, add, subscribe, confirm, unsubscribe, remove, bounces.

Functions here take an open session and never commit: the caller (a CLI command, a web request,
a scheduler job) owns the transaction. Every status change writes a :class:`SubscriberEvent`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from weekly_mailer.clock import utcnow
from weekly_mailer.compose.names import forbidden_character, name_problem
from weekly_mailer.errors import InvalidAddressError, SubscriberError
from weekly_mailer.store.models import EventKind, Subscriber, SubscriberEvent, SubscriberStatus

_CHUNK = 500
_STATUSES = {s.value for s in SubscriberStatus}


def _undecodable(text: str) -> str:
    """``"byte 0xFF"`` for the first byte that was not UTF-8 (a surrogate-escaped command-line
    argument), else ``""``."""
    for ch in text:
        if 0xDC80 <= ord(ch) <= 0xDCFF:
            return f"byte 0x{ord(ch) - 0xDC00:02X}"
    return ""


def normalise_address(raw: str) -> tuple[str, str]:
    """Validate an address (syntax only, no DNS) and return ``(address, unique key)``."""
    value = raw.strip()
    if not value:
        raise InvalidAddressError("the address is empty")
    if any(c in value for c in "\r\n\x00"):
        raise InvalidAddressError("the address contains a line break or NUL")
    bad = _undecodable(value)
    if bad:
        raise InvalidAddressError(f"the address is not valid UTF-8 text ({bad})")
    try:
        # No SMTPUTF8: every address must be deliverable over plain SMTP and fit in an ASCII
        # header. Internationalised domains are kept in their ASCII (punycode) form.
        info = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidAddressError(f"{value!r} is not a valid address: {exc}") from exc
    address = info.ascii_email or info.normalized
    return address, address.lower()


def clean_name(raw: str | None) -> str:
    """A display name on one line, or a :class:`SubscriberError`."""
    undecodable = _undecodable(raw or "")
    if undecodable:
        raise SubscriberError(f"the name is not valid UTF-8 text ({undecodable})")
    if raw and any(c in "\r\n\x85\u2028\u2029" for c in raw):
        raise SubscriberError("the name contains a line break")
    bad = forbidden_character(raw) if raw else None
    if bad is not None:  # before the spaces are collapsed: str.split() eats some of them
        raise SubscriberError(f"the name contains the control character U+{ord(bad):04X}")
    name = " ".join(raw.split()) if raw else ""
    problem = name_problem(name)  # the composer's rule: every stored name can be mailed
    if problem:
        raise SubscriberError(problem)
    return name


def get_by_email(session: Session, email: str) -> Subscriber | None:
    """The subscriber with this address (any case), if any."""
    _, key = normalise_address(email)
    return session.scalars(select(Subscriber).where(Subscriber.email_key == key)).one_or_none()


def record(
    session: Session,
    sub: Subscriber,
    kind: EventKind,
    *,
    source: str,
    detail: str = "",
    now: dt.datetime | None = None,
) -> None:
    """Append one event to the subscriber's audit trail."""
    session.add(
        SubscriberEvent(
            subscriber=sub, kind=kind.value, source=source, detail=detail, at=now or utcnow()
        )
    )


def _activate(sub: Subscriber, *, source: str, now: dt.datetime) -> None:
    sub.status = SubscriberStatus.ACTIVE.value
    sub.confirmed_at = now
    sub.consent_at = now
    sub.consent_source = source
    sub.unsubscribed_at = None
    sub.bounce_count = 0


def _new_pending(
    session: Session, address: str, key: str, name: str, *, source: str, now: dt.datetime
) -> Subscriber:
    """A new pending subscriber. Consent (time, source) is recorded when they become active."""
    sub = Subscriber(
        email=address,
        email_key=key,
        name=name,
        status=SubscriberStatus.PENDING.value,
        source=source,
        created_at=now,
        updated_at=now,
    )
    session.add(sub)
    return sub


def add(
    session: Session,
    email: str,
    *,
    name: str = "",
    confirmed: bool = False,
    resubscribe: bool = False,
    source: str = "cli",
    now: dt.datetime | None = None,
) -> Subscriber:
    """Add one subscriber (pending, or active with ``confirmed``)."""
    now = now or utcnow()
    address, key = normalise_address(email)
    clean = clean_name(name)
    sub = session.scalars(select(Subscriber).where(Subscriber.email_key == key)).one_or_none()
    if sub is not None and sub.status == SubscriberStatus.EDITOR:
        record(session, sub, EventKind.SUBSCRIBED, source=source, now=now)  # a reader now
    elif sub is not None:
        if sub.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING) and not (
            confirmed and sub.status == SubscriberStatus.PENDING
        ):
            raise SubscriberError(f"{address} is already a subscriber ({sub.status})")
        if (
            sub.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING)
            and not resubscribe
        ):
            raise SubscriberError(
                f"{address} is {sub.status}; pass --resubscribe to subscribe it again"
            )
        if sub.status != SubscriberStatus.PENDING:
            record(session, sub, EventKind.RESUBSCRIBED, source=source, now=now)
    else:
        sub = _new_pending(session, address, key, clean, source=source, now=now)
        record(session, sub, EventKind.SUBSCRIBED, source=source, now=now)
    if clean:
        sub.name = clean
    if confirmed:
        _activate(sub, source=source, now=now)
        record(session, sub, EventKind.CONFIRMED, source=source, now=now)
    else:
        sub.status = SubscriberStatus.PENDING.value
    session.flush()
    return sub


def _chunks(seq: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


# --- reading ------------------------------------------------------------------------------


def _status_filter(status: str | None) -> Any:
    if status is None:  # an erased reader's tombstone is no subscriber (subscribers.forget),
        # nor is an editor's row (proofs: an editor who is no reader)
        return Subscriber.status.not_in(
            [SubscriberStatus.ERASED.value, SubscriberStatus.EDITOR.value]
        )
    if status not in _STATUSES:
        raise SubscriberError(f"unknown status {status!r} (one of: {', '.join(sorted(_STATUSES))})")
    return Subscriber.status == status


def count(session: Session, *, status: str | None = None) -> int:
    """How many subscribers (with this status)."""
    return (
        session.scalar(select(func.count()).select_from(Subscriber).where(_status_filter(status)))
        or 0
    )


def iter_subscribers(
    session: Session,
    *,
    status: str | None = None,
    search: str | None = None,
    limit: int | None = None,
) -> Iterator[Subscriber]:
    """Subscribers in id order, streamed."""
    stmt = select(Subscriber).where(_status_filter(status)).order_by(Subscriber.id)
    if search:
        stmt = stmt.where(Subscriber.email_key.contains(search.lower(), autoescape=True))
    if limit is not None:
        stmt = stmt.limit(limit)
    yield from session.scalars(stmt.execution_options(yield_per=1000))


# --- changes ------------------------------------------------------------------------------


def remove(session: Session, email: str) -> Subscriber:
    """Delete a subscriber and their history (erasure). Deliveries go too."""
    sub = get_by_email(session, email)
    if sub is None:
        raise SubscriberError(f"{email.strip()} is not a subscriber")
    session.delete(sub)
    session.flush()
    return sub


def unsubscribe(
    session: Session,
    sub: Subscriber,
    *,
    source: str,
    detail: str = "",
    now: dt.datetime | None = None,
) -> bool:
    """Unsubscribe; idempotent. Returns whether anything changed."""
    if sub.status == SubscriberStatus.UNSUBSCRIBED:
        return False
    now = now or utcnow()
    sub.status = SubscriberStatus.UNSUBSCRIBED.value
    sub.unsubscribed_at = now
    record(session, sub, EventKind.UNSUBSCRIBED, source=source, detail=detail, now=now)
    session.flush()
    return True


def complain(
    session: Session,
    sub: Subscriber,
    *,
    source: str,
    detail: str = "",
    now: dt.datetime | None = None,
) -> bool:
    """Mark a spam complaint (never mailed again); idempotent. Returns whether anything changed."""
    if sub.status == SubscriberStatus.COMPLAINED:
        return False
    now = now or utcnow()
    sub.status = SubscriberStatus.COMPLAINED.value
    record(session, sub, EventKind.COMPLAINED, source=source, detail=detail, now=now)
    session.flush()
    return True


def confirm(
    session: Session, sub: Subscriber, *, source: str, now: dt.datetime | None = None
) -> bool:
    """Complete a double opt-in; idempotent for active subscribers. Returns whether it changed."""
    if sub.status == SubscriberStatus.ACTIVE:
        return False
    now = now or utcnow()
    was = sub.status
    _activate(sub, source=source, now=now)
    record(
        session,
        sub,
        EventKind.CONFIRMED if was == SubscriberStatus.PENDING else EventKind.RESUBSCRIBED,
        source=source,
        now=now,
    )
    session.flush()
    return True


def request_subscription(
    session: Session,
    email: str,
    *,
    name: str = "",
    source: str,
    now: dt.datetime | None = None,
) -> Subscriber | None:
    """A sign-up from the web: returns the subscriber to confirm, or ``None`` when already active.

    Unknown addresses become pending; pending, unsubscribed and bounced ones get a fresh
    confirmation (the link, not this call, changes their status). Complaints are never re-invited.
    """
    now = now or utcnow()
    address, key = normalise_address(email)
    clean = clean_name(name)
    sub = session.scalars(select(Subscriber).where(Subscriber.email_key == key)).one_or_none()
    if sub is None:
        sub = _new_pending(session, address, key, clean, source=source, now=now)
        record(session, sub, EventKind.SUBSCRIBED, source=source, now=now)
        session.flush()
        return sub
    if sub.status in (SubscriberStatus.ACTIVE, SubscriberStatus.COMPLAINED):
        return None
    if sub.status == SubscriberStatus.EDITOR:  # an editor's row (proofs): a new reader
        sub.status = SubscriberStatus.PENDING.value
        record(session, sub, EventKind.SUBSCRIBED, source=source, now=now)
    if clean and sub.status == SubscriberStatus.PENDING:
        sub.name = clean
    return sub


def expire_pending(session: Session, *, older_than: dt.datetime) -> int:
    """Forget web sign-ups whose last confirmation e-mail is older than ``older_than``."""
    stale = select(Subscriber.id).where(
        Subscriber.status == SubscriberStatus.PENDING,
        func.coalesce(Subscriber.confirmation_sent_at, Subscriber.created_at) < older_than,
        # Only sign-ups that never completed: someone who once confirmed (and maybe left and
        # asked to come back) keeps their row, their consent history and their unsubscribe.
        Subscriber.confirmed_at.is_(None),
        Subscriber.unsubscribed_at.is_(None),
        Subscriber.source.like("web%"),
    )
    ids = list(session.scalars(stale))
    for chunk in _chunks(ids):
        for sub in session.scalars(select(Subscriber).where(Subscriber.id.in_(chunk))):
            session.delete(sub)
    session.flush()
    return len(ids)


def note_delivered(session: Session, subscriber_ids: Sequence[int]) -> None:
    """A message reached these subscribers: their earlier bounces were transient (reset)."""
    if not subscriber_ids:
        return
    session.execute(
        update(Subscriber)
        .where(Subscriber.id.in_(sorted(set(subscriber_ids))), Subscriber.bounce_count > 0)
        .values(bounce_count=0)
        .execution_options(synchronize_session=False)
    )


def note_bounce(
    session: Session, subscriber_ids: Sequence[int], *, limit: int, detail: str = ""
) -> int:
    """Count one hard bounce each; subscribers at ``limit`` become bounced. Returns how many did."""
    if not subscriber_ids:
        return 0
    session.execute(
        update(Subscriber)
        .where(Subscriber.id.in_(subscriber_ids))
        .values(bounce_count=Subscriber.bounce_count + 1)
    )
    over = list(
        session.scalars(
            select(Subscriber).where(
                Subscriber.id.in_(subscriber_ids),
                Subscriber.bounce_count >= limit,
                Subscriber.status == SubscriberStatus.ACTIVE,
            )
        )
    )
    for sub in over:
        sub.status = SubscriberStatus.BOUNCED.value
        record(session, sub, EventKind.BOUNCED, source="delivery", detail=detail)
    session.flush()
    return len(over)
