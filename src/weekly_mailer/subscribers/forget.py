""" "Forget me" (the reader's page) and ``subscribers erase`` (the operator): erasure that keeps
the list's books.

What goes: the address and the name (the subscriber row becomes a tombstone, status ``erased``,
with neither), every event, every address change, and the address wherever a report or a
refusal quoted it (``bounce_event``, ``delivery.last_error``, ``domain_pause.reason``). What
stays: the delivery rows, so each issue's counts are unchanged; an ``erasure`` row saying when
and by whom; and in it a keyed hash of the address (HMAC-SHA256 under ``secret_key``), so that a
later import of the same address is kept off the list unless the operator says ``--resubscribe``.
A new sign-up through the web form is a new double opt-in, and is allowed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from weekly_mailer.errors import SubscriberError
from weekly_mailer.store.bounce_models import BounceEvent, DomainPause
from weekly_mailer.store.models import Delivery, Subscriber, SubscriberEvent, SubscriberStatus
from weekly_mailer.store.reader_models import AddressChange, Erasure
from weekly_mailer.subscribers.rules import get_by_email

ERASED_TEXT = "[erased]"
_LOOKUP = 1000


def address_hash(secret_key: str, email_key: str) -> str:
    """The keyed hash an erasure keeps of an address (lower-cased)."""
    key = hmac.new(secret_key.encode("utf-8"), b"weekly_mailer.erasure", hashlib.sha256).digest()
    return hmac.new(key, email_key.encode("utf-8"), hashlib.sha256).hexdigest()


def erase(session: Session, sub: Subscriber, *, secret_key: str, by: str, now: dt.datetime) -> None:
    """Erase one reader (see the module); idempotent on a tombstone."""
    if sub.status == SubscriberStatus.ERASED:
        return
    words = sorted({sub.email, sub.email_key}, key=len, reverse=True)
    changes = session.scalars(select(AddressChange).where(AddressChange.subscriber_id == sub.id))
    for change in changes:  # earlier addresses of theirs are theirs too
        words += [change.old_email, change.old_email.lower(), change.new_email]
    words = [w for w in dict.fromkeys(words) if w]
    session.execute(delete(SubscriberEvent).where(SubscriberEvent.subscriber_id == sub.id))
    session.execute(delete(AddressChange).where(AddressChange.subscriber_id == sub.id))
    session.execute(
        update(BounceEvent)
        .where(BounceEvent.recipient.in_(words) | (BounceEvent.subscriber_id == sub.id))
        .values(recipient="")
        .execution_options(synchronize_session=False)
    )
    for word in words:  # only the rows that quote it: a like per word, no table-wide write
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        for table, column in (
            (BounceEvent, BounceEvent.reason),
            (Delivery, Delivery.last_error),
            (DomainPause, DomainPause.reason),
        ):
            session.execute(
                update(table)
                .where(column.like(pattern, escape="\\"))
                .values({column.key: func.replace(column, word, ERASED_TEXT)})
                .execution_options(synchronize_session=False)
            )
    session.add(
        Erasure(
            address_hash=address_hash(secret_key, sub.email_key),
            erased_at=now,
            erased_by=by[:200],
            subscriber_id=sub.id,
        )
    )
    sub.email, sub.email_key, sub.name = "", f"erased:{sub.id}", ""
    sub.status = SubscriberStatus.ERASED.value
    sub.source = sub.consent_source = ""
    sub.consent_at = sub.confirmed_at = sub.confirmation_sent_at = sub.paused_until = None
    sub.paused_issues = 0
    sub.unsubscribed_at = sub.updated_at = now
    session.flush()
    session.expire(sub, ["events"])


def erase_address(
    session: Session, address: str, *, secret_key: str, by: str, now: dt.datetime
) -> None:
    """``subscribers erase ADDRESS``: ``SubscriberError`` when it is no reader (or was erased)."""
    sub = get_by_email(session, address)
    if sub is None:
        raise SubscriberError(f"{address.strip()} is not a subscriber")
    erase(session, sub, secret_key=secret_key, by=by, now=now)


def erased_keys(session: Session, secret_key: str, keys: Iterable[str]) -> set[str]:
    """The addresses (lower-cased keys) among ``keys`` that were erased before."""
    by_hash = {address_hash(secret_key, key): key for key in keys}
    hashes = list(by_hash)
    found: set[str] = set()
    for i in range(0, len(hashes), _LOOKUP):
        chunk = hashes[i : i + _LOOKUP]
        found.update(
            by_hash[h]
            for h in session.scalars(
                select(Erasure.address_hash).where(Erasure.address_hash.in_(chunk))
            )
        )
    return found
