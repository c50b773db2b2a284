"""Confirmation e-mails (double opt-in): queued in the outbox, delivered by the worker.

Asking for a confirmation is one outbox row (``kind`` ``confirmation``), inserted in the same
transaction as whatever asked for it (a web sign-up, a resubscribe, ``subscribers add``), so a
committed request never loses its e-mail. The daily limit per address
(``confirmations_per_address_per_day``) is applied here and the ``confirmation_sent`` event is
recorded when the row is queued; a confirmation that finally fails for another reason than a 5xx
refusal (:func:`note_not_sent`, called by the worker) is taken out of the limit again. Nothing here
talks to a mail server: ``serve``, ``run``, ``worker`` and the CLI deliver the rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from weekly_mailer.errors import SubscriberError
from weekly_mailer.store import outbox
from weekly_mailer.store.models import Delivery, DeliveryKind, Subscriber, SubscriberStatus
from weekly_mailer.subscribers.optin import (
    may_send_confirmation,
    note_confirmation_sent,
    undo_confirmation_sent,
)
from weekly_mailer.subscribers.rules import get_by_email, iter_subscribers


class Queued(enum.StrEnum):
    QUEUED = "queued"  # a new confirmation e-mail is in the outbox
    WAITING = "waiting"  # one asked for earlier is still in the outbox: no second one
    LIMITED = "limited"  # over the daily limit: nothing queued


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """What :func:`request_confirmation` did; ``delivery_id`` is the outbox row, if any."""

    outcome: Queued
    delivery_id: int | None = None


def request_confirmation(
    session: Session,
    sub: Subscriber,
    *,
    per_day: int,
    source: str,
    detail: str = "",
    now: dt.datetime,
) -> Request:
    """Queue a confirmation e-mail for ``sub`` within the daily limit (``per_day``).

    A confirmation still waiting in the outbox for this subscriber is not doubled. Locks the
    subscriber's row (see ``may_send_confirmation``), so simultaneous requests act once.
    """
    allowed = may_send_confirmation(session, sub, per_day=per_day, now=now)
    waiting = outbox.open_confirmation(session, sub.id)
    if waiting is not None:
        return Request(Queued.WAITING, waiting)
    if not allowed:
        return Request(Queued.LIMITED)
    delivery_id = outbox.enqueue_confirmation(session, sub.id, now=now)
    note_confirmation_sent(session, sub, source=source, detail=detail, now=now)
    return Request(Queued.QUEUED, delivery_id)


def pending_subscribers(session: Session, emails: Sequence[str] | None) -> list[Subscriber]:
    """Every pending subscriber (``emails`` ``None``), or those addresses, each of which must be
    a pending subscriber (``SubscriberError`` otherwise)."""
    if emails is None:
        return list(iter_subscribers(session, status=SubscriberStatus.PENDING.value))
    found: list[Subscriber] = []
    for email in emails:
        sub = get_by_email(session, email)
        if sub is None:
            raise SubscriberError(f"{email.strip()} is not a subscriber")
        if sub.status != SubscriberStatus.PENDING:
            raise SubscriberError(f"{sub.email} is {sub.status}, not pending")
        found.append(sub)
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class RowState:
    """Where one confirmation e-mail stands in the outbox."""

    delivery_id: int
    email: str
    status: str
    error: str


def row_states(session: Session, delivery_ids: Sequence[int]) -> list[RowState]:
    """The outbox state of these confirmation rows (gone ones left out), in id order."""
    if not delivery_ids:
        return []
    found = session.execute(
        select(Delivery.id, Subscriber.email, Delivery.status, Delivery.last_error)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(delivery_ids))
        .order_by(Delivery.id)
    )
    return [RowState(int(i), e, s, err or "") for i, e, s, err in found]


def note_not_sent(
    session: Session, delivery_ids: Sequence[int], *, reason: str, now: dt.datetime
) -> int:
    """These confirmation rows finally failed without a 5xx refusal: each person may ask for
    another confirmation at once (their daily limit is lifted). Returns how many were undone."""
    if not delivery_ids:
        return 0
    rows = session.execute(
        select(Delivery.subscriber_id, Delivery.created_at).where(
            Delivery.id.in_(delivery_ids),
            Delivery.kind == DeliveryKind.CONFIRMATION.value,
        )
    ).all()
    reason = " ".join(reason.split())
    return sum(
        undo_confirmation_sent(session, sid, queued_at=at, reason=reason, now=now)
        for sid, at in rows
    )
