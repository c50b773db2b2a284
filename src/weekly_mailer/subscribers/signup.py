"""Sign-up, the one service call behind the web form and ``subscribers add``.

:func:`sign_up` adds (or finds) the subscriber and queues their confirmation e-mail in the
caller's one transaction, so a committed sign-up never lacks its e-mail and a failed one leaves
neither. The door decides only what an address already known means: the public form never
tells (an active address is quietly left alone; a pending, unsubscribed or bounced one gets a
fresh link, and the link changes its status), while the operator's ``subscribers add`` says so
(an error, unless ``--resubscribe`` or ``--confirmed`` says what to do). Delivering the e-mail
is the caller's: the web wakes its outbox worker, the CLI delivers it at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import TYPE_CHECKING

from weekly_mailer.store.models import SubscriberStatus
from weekly_mailer.subscribers.confirmations import Request, request_confirmation
from weekly_mailer.subscribers.rules import add, request_subscription

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.store.models import Subscriber


class Door(enum.Enum):
    """Who signs someone up: ``(subscriber source, confirmation source)`` of the events."""

    FORM = ("web", "web:signup")  # the public sign-up form
    OPERATOR = ("cli", "cli")  # `subscribers add`

    @property
    def source(self) -> str:
        return self.value[0]

    @property
    def confirmation_source(self) -> str:
        return self.value[1]


@dataclasses.dataclass(frozen=True, slots=True)
class SignUp:
    """What :func:`sign_up` did. ``subscriber`` is ``None`` when the form was used for an
    address that is active already (nothing changes, nothing is sent); ``confirmation`` is the
    confirmation e-mail asked for (queued, still waiting, or over the daily limit), ``None``
    when none was asked for (an active subscriber, or ``send_link=False``)."""

    subscriber: Subscriber | None
    confirmation: Request | None = None


def sign_up(
    session: Session,
    email: str,
    *,
    door: Door,
    per_day: int,
    now: dt.datetime,
    name: str = "",
    detail: str = "",
    confirmed: bool = False,
    resubscribe: bool = False,
    send_link: bool = True,
) -> SignUp:
    """Sign ``email`` up through ``door`` and queue its confirmation e-mail, in ``session``.

    ``confirmed`` and ``resubscribe`` are the operator's (see :func:`~.rules.add`); a pending
    subscriber is sent the link unless ``send_link`` is false, within ``per_day``
    (``confirmations_per_address_per_day``). ``SubscriberError`` for an address the operator's
    door refuses; the form's door refuses only a malformed address or name.
    """
    sub: Subscriber | None
    if door is Door.FORM:
        sub = request_subscription(session, email, name=name, source=door.source, now=now)
    else:
        sub = add(
            session,
            email,
            name=name,
            confirmed=confirmed,
            resubscribe=resubscribe,
            source=door.source,
            now=now,
        )
    # The form asks a link for every address it may invite (the link, not the form, brings an
    # unsubscribed reader back); the operator's door for the pending subscribers it made.
    wants_link = door is Door.FORM or (sub is not None and sub.status == SubscriberStatus.PENDING)
    if sub is None or not send_link or not wants_link:
        return SignUp(sub)
    asked = request_confirmation(
        session,
        sub,
        per_day=per_day,
        source=door.confirmation_source,
        detail=detail,
        now=now,
    )
    return SignUp(sub, asked)
