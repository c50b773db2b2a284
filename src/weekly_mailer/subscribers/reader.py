"""The reader's own page (``/manage/<token>``): rename, move to another address, pause, a copy of
their data, and "Lost your link?".

Every function takes an open session and never commits; the web request owns the transaction.
Whatever is mailed (the manage link, a move's confirmation and its notice, the data copy) is one
outbox row of its own ``kind``, inserted here in the transaction that asked for it and built by
:mod:`.reader_mail` when a worker claims it. Outcomes are plain values; the edge decides pages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from weekly_mailer.errors import SubscriberError, TokenError
from weekly_mailer.store import outbox
from weekly_mailer.store.models import (
    DeliveryKind,
    EventKind,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
)
from weekly_mailer.store.reader_models import AddressChange
from weekly_mailer.subscribers import optin
from weekly_mailer.subscribers.rules import clean_name, get_by_email, normalise_address, record
from weekly_mailer.tokens import Purpose, TokenSigner

DAY = dt.timedelta(days=1)
MAX_PAUSE_ISSUES = 12
MAX_PAUSE_DAYS = 366
# The events a reader sees as their consent record (when and how they joined, moved, left).
CONSENT_KINDS = (
    EventKind.SUBSCRIBED.value,
    EventKind.CONFIRMED.value,
    EventKind.RESUBSCRIBED.value,
    EventKind.UNSUBSCRIBED.value,
    EventKind.MOVED.value,
)


class MoveOutcome(enum.StrEnum):
    REQUESTED = "requested"  # a confirmation link went to the new address
    SAME = "same"  # that is the address already
    TAKEN = "taken"  # the new address is a reader already
    LIMITED = "limited"  # too many requests today


class ConfirmMove(enum.StrEnum):
    MOVED = "moved"
    ALREADY = "already"  # this change was confirmed before
    TAKEN = "taken"  # someone joined with the new address meanwhile


def queue_mail(
    session: Session, subscriber_id: int, kind: DeliveryKind, *, now: dt.datetime
) -> int:
    """One outbox row of the reader's own mail, due now; returns its id."""
    return outbox.enqueue_mail(session, subscriber_id, kind, now=now)


def _sent_since(session: Session, sub_id: int, kind: EventKind, since: dt.datetime) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                SubscriberEvent.subscriber_id == sub_id,
                SubscriberEvent.kind == kind.value,
                SubscriberEvent.at >= since,
            )
        )
        or 0
    )


# -- the page -------------------------------------------------------------------------------


def manage_token(signer: TokenSigner, sub: Subscriber) -> str:
    return signer.make(Purpose.MANAGE, sub.id, sub.email_key)


def reader_for_token(
    session: Session, signer: TokenSigner, token: str, *, for_update: bool = False
) -> Subscriber:
    """The reader a manage token names; ``TokenError`` for any other token, or one whose address
    changed since (a move kills the old links), or a reader who was forgotten."""
    sub = optin.subscriber_for_token(session, signer, Purpose.MANAGE, token, for_update=for_update)
    if sub.status == SubscriberStatus.ERASED:
        raise TokenError("invalid link")
    return sub


@dataclasses.dataclass(frozen=True, slots=True)
class Consent:
    kind: str
    at: dt.datetime
    source: str
    detail: str


@dataclasses.dataclass(frozen=True, slots=True)
class ReaderView:
    """What the page shows."""

    email: str
    name: str
    status: str
    joined_at: dt.datetime
    consent_at: dt.datetime | None
    consent_source: str
    paused_issues: int
    paused_until: dt.datetime | None
    pending_move: str  # the address a move waits to be confirmed at, or ""
    record: tuple[Consent, ...]


def view(session: Session, sub: Subscriber, *, now: dt.datetime) -> ReaderView:
    events = session.scalars(
        select(SubscriberEvent)
        .where(SubscriberEvent.subscriber_id == sub.id, SubscriberEvent.kind.in_(CONSENT_KINDS))
        .order_by(SubscriberEvent.id)
    )
    pending = session.scalar(
        select(AddressChange.new_email)
        .where(
            AddressChange.subscriber_id == sub.id,
            AddressChange.confirmed_at.is_(None),
            AddressChange.requested_at > now - DAY * 7,
        )
        .order_by(AddressChange.id.desc())
        .limit(1)
    )
    until = sub.paused_until if sub.paused_until and sub.paused_until > now else None
    return ReaderView(
        email=sub.email,
        name=sub.name,
        status=sub.status,
        joined_at=sub.created_at,
        consent_at=sub.consent_at,
        consent_source=sub.consent_source,
        paused_issues=sub.paused_issues,
        paused_until=until,
        pending_move=pending or "",
        record=tuple(Consent(e.kind, e.at, e.source, e.detail) for e in events),
    )


def rename(session: Session, sub: Subscriber, name: str, *, source: str, now: dt.datetime) -> None:
    """A new display name (``SubscriberError`` for one the composer could not mail)."""
    clean = clean_name(name)
    if clean == sub.name:
        return
    sub.name = clean
    sub.updated_at = now
    record(session, sub, EventKind.RENAMED, source=source, now=now)


# -- moving to another address ----------------------------------------------------------------


def request_move(
    session: Session, sub: Subscriber, address: str, *, per_day: int, source: str, now: dt.datetime
) -> MoveOutcome:
    """Mail a confirmation link to ``address``; nothing changes until it is confirmed there."""
    new, key = normalise_address(address)  # SubscriberError: not an address
    if key == sub.email_key:
        return MoveOutcome.SAME
    if get_by_email(session, new) is not None:
        return MoveOutcome.TAKEN
    if _sent_since(session, sub.id, EventKind.MOVE_REQUESTED, now - DAY) >= max(per_day, 1):
        return MoveOutcome.LIMITED
    change = AddressChange(
        subscriber_id=sub.id, old_email=sub.email, new_email=new, new_email_key=key,
        requested_at=now,
    )  # fmt: skip
    session.add(change)
    session.flush()
    change.confirm_delivery_id = queue_mail(session, sub.id, DeliveryKind.MOVE_CONFIRM, now=now)
    record(session, sub, EventKind.MOVE_REQUESTED, source=source, detail=f"to {new}", now=now)
    return MoveOutcome.REQUESTED


def move_binding(change: AddressChange) -> str:
    """What a move token is bound to: this change and its new address."""
    return f"move {change.id} {change.new_email_key}"


def move_token(signer: TokenSigner, sub: Subscriber, change: AddressChange) -> str:
    return signer.make(Purpose.MOVE, sub.id, sub.email_key, bound_to=move_binding(change))


def change_for_token(
    session: Session, signer: TokenSigner, token: str, *, max_age: dt.timedelta
) -> tuple[Subscriber, AddressChange]:
    """The reader and the change a move token names; ``TokenError`` otherwise (expired, or the
    reader's address changed since: a link of an older request dies with it)."""
    subscriber_id, digest = signer.load(Purpose.MOVE, token, max_age=max_age)
    sub = session.get(Subscriber, subscriber_id)
    if sub is None or sub.status == SubscriberStatus.ERASED:
        raise TokenError("invalid link")
    changes = session.scalars(
        select(AddressChange).where(AddressChange.subscriber_id == sub.id)
    ).all()
    for change in changes:
        if signer.matches(digest, sub.email_key, bound_to=move_binding(change)):
            return sub, change
        if change.confirmed_at is not None and signer.matches(
            digest, change.old_email.lower(), bound_to=move_binding(change)
        ):
            return sub, change  # confirmed already: the link still shows that it was
    raise TokenError("invalid link")


def confirm_move(
    session: Session, sub: Subscriber, change: AddressChange, *, source: str, now: dt.datetime
) -> ConfirmMove:
    """Make the change (confirmed at the new address) and tell the old address."""
    if change.confirmed_at is not None:
        return ConfirmMove.ALREADY
    session.refresh(sub, with_for_update=True)
    if get_by_email(session, change.new_email) is not None:
        return ConfirmMove.TAKEN
    old = sub.email
    sub.email, sub.email_key = change.new_email, change.new_email_key
    sub.updated_at = now
    change.confirmed_at = now
    change.old_email = old
    session.flush()  # the unique key: a simultaneous sign-up of the new address fails here
    change.notice_delivery_id = queue_mail(session, sub.id, DeliveryKind.MOVE_NOTICE, now=now)
    record(
        session, sub, EventKind.MOVED, source=source, detail=f"from {old} to {sub.email}", now=now
    )
    return ConfirmMove.MOVED


# -- pausing ----------------------------------------------------------------------------------


def pause(
    session: Session,
    sub: Subscriber,
    *,
    issues: int | None = None,
    until: dt.date | None = None,
    source: str,
    now: dt.datetime,
) -> None:
    """Skip the next ``issues`` issues (1 to 12), or every issue until the date ``until``."""
    if issues is not None:
        if not 1 <= issues <= MAX_PAUSE_ISSUES:
            raise SubscriberError(f"a pause is 1 to {MAX_PAUSE_ISSUES} issues")
        sub.paused_issues, sub.paused_until = issues, None
        detail = f"for {issues} issue{'s' if issues > 1 else ''}"
    elif until is not None:
        at = dt.datetime.combine(until, dt.time(), tzinfo=dt.UTC)
        if not now < at <= now + dt.timedelta(days=MAX_PAUSE_DAYS):
            raise SubscriberError("the date must be after today and within a year")
        sub.paused_issues, sub.paused_until = 0, at
        detail = f"until {until.isoformat()}"
    else:
        raise SubscriberError("say how many issues, or until when")
    sub.updated_at = now
    record(session, sub, EventKind.PAUSED, source=source, detail=detail, now=now)


def resume(session: Session, sub: Subscriber, *, source: str, now: dt.datetime) -> bool:
    if not is_paused(sub, now=now):
        return False
    sub.paused_issues, sub.paused_until = 0, None
    sub.updated_at = now
    record(session, sub, EventKind.RESUMED, source=source, now=now)
    return True


def is_paused(sub: Subscriber, *, now: dt.datetime) -> bool:
    return sub.paused_issues > 0 or (sub.paused_until is not None and sub.paused_until > now)


def pause_label(sub: Subscriber, *, now: dt.datetime) -> str:
    """``paused for 2 issues`` / ``paused until 2027-01-06`` / ``""``: for list and export."""
    if sub.paused_issues > 0:
        n = sub.paused_issues
        return f"paused for {n} issue{'s' if n > 1 else ''}"
    if sub.paused_until is not None and sub.paused_until > now:
        return f"paused until {sub.paused_until.date().isoformat()}"
    return ""


def count_paused(session: Session, *, now: dt.datetime) -> int:
    """How many active readers are paused now."""
    return int(
        session.scalar(
            select(func.count()).where(
                Subscriber.status == SubscriberStatus.ACTIVE.value,
                (Subscriber.paused_issues > 0) | (Subscriber.paused_until > now),
            )
        )
        or 0
    )


def count_issue_for_pauses(session: Session) -> int:
    """An issue was enqueued: each reader paused for a number of issues has one less to skip.
    Called in the transaction that enqueued it (``issues.prepare``)."""
    done = session.execute(
        update(Subscriber)
        .where(Subscriber.paused_issues > 0, Subscriber.status == SubscriberStatus.ACTIVE.value)
        .values(paused_issues=Subscriber.paused_issues - 1)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(done, "rowcount", 0) or 0)


# -- mail the reader asks for ----------------------------------------------------------------


def request_data(session: Session, sub: Subscriber, *, source: str, now: dt.datetime) -> bool:
    """Queue the data copy (at most one a day); ``False`` when one went out in the last day."""
    session.refresh(sub, with_for_update=True)
    if _sent_since(session, sub.id, EventKind.DATA_SENT, now - DAY):
        return False
    queue_mail(session, sub.id, DeliveryKind.DATA_COPY, now=now)
    record(session, sub, EventKind.DATA_SENT, source=source, now=now)
    return True


def request_link(
    session: Session, address: str, *, per_day: int, source: str, now: dt.datetime
) -> int | None:
    """ "Lost your link?": queue the manage link when ``address`` is a reader (within
    ``per_day`` a day); the outbox row's id, or ``None`` (a stranger, or over the limit). The
    caller answers the same either way."""
    try:
        sub = get_by_email(session, address)
    except SubscriberError:
        return None
    if sub is None or sub.status in (SubscriberStatus.ERASED, SubscriberStatus.COMPLAINED):
        return None
    session.refresh(sub, with_for_update=True)
    if _sent_since(session, sub.id, EventKind.LINK_SENT, now - DAY) >= per_day:
        return None
    delivery_id = queue_mail(session, sub.id, DeliveryKind.MANAGE_LINK, now=now)
    record(session, sub, EventKind.LINK_SENT, source=source, now=now)
    return delivery_id
