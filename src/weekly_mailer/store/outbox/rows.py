"""What the outbox's functions share: the open states, the row types, the common filters."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, cast

from sqlalchemy import Table, and_, case, or_, select

from weekly_mailer.store.models import (
    DUE_STATES as DUE_STATES,  # the open states, defined once in store/models.py
)
from weekly_mailer.store.models import (
    OPEN_STATES as OPEN_STATES,
)
from weekly_mailer.store.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Issue,
    IssueStatus,
    SubscriberStatus,
)

T = cast(Table, Delivery.__table__)


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedRow:
    """A delivery claimed by one worker, with what is needed to personalise its message.

    ``issue_id`` is ``None`` for a confirmation e-mail (``kind`` ``confirmation``).
    """

    delivery_id: int
    issue_id: int | None
    subscriber_id: int
    email: str
    email_key: str
    name: str
    attempts: int
    first_failure_at: dt.datetime | None
    kind: str = DeliveryKind.ISSUE.value
    lease_token: str = ""  # the claim's fence: see ``claims.claim``
    signup: str = ""  # a confirmation's sign-up binding (``store.signups``), read at the claim
    taken_from: str = ""  # the token of the claim whose lease had expired, if it had one


@dataclasses.dataclass(frozen=True, slots=True)
class StaleRow:
    """A row :func:`~weekly_mailer.store.outbox.fail_stale_rows` gave up on."""

    delivery_id: int
    kind: str
    subscriber_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt, written back in a batch by :func:`record`.

    ``status`` is ``sent``, ``deferred``, ``failed`` or ``queued`` (handed back untried).
    ``counted``: ``False`` for a deferral about our pace (a throttling reply): no attempt and
    no first failure are counted, so it never brings the row nearer to being given up.
    """

    row: ClaimedRow
    status: str
    code: int | None = None
    error: str = ""
    next_attempt_at: dt.datetime | None = None
    bounce: bool = False
    at: dt.datetime | None = None
    counted: bool = True


# Who may still get each kind of message: issue copies go to active subscribers only; a
# confirmation to anyone who asked and has not confirmed (pending, or back after leaving),
# never to an address that complained.
SENDABLE = {
    DeliveryKind.ISSUE.value: frozenset({SubscriberStatus.ACTIVE.value}),
    DeliveryKind.CONFIRMATION.value: frozenset(
        {
            SubscriberStatus.PENDING.value,
            SubscriberStatus.UNSUBSCRIBED.value,
            SubscriberStatus.BOUNCED.value,
        }
    ),
}
# The reader's own mail (the manage page's kinds) goes to anyone who may open the page.
SENDABLE.update(
    dict.fromkeys(
        (DeliveryKind.MANAGE_LINK, DeliveryKind.MOVE_CONFIRM, DeliveryKind.MOVE_NOTICE,
         DeliveryKind.DATA_COPY),
        SENDABLE[DeliveryKind.CONFIRMATION.value] | {SubscriberStatus.ACTIVE.value},
    )
)  # fmt: skip
# An editor's proof goes to the editor whatever their standing as a reader, unless they
# complained or were erased (store.proof_models; the address is the proof copy's).
SENDABLE[DeliveryKind.PROOF.value] = frozenset(
    {s.value for s in SubscriberStatus} - {SubscriberStatus.COMPLAINED, SubscriberStatus.ERASED}
)


def claimable(now: dt.datetime) -> Any:
    return or_(
        and_(
            Delivery.status.in_([s.value for s in DUE_STATES]),
            Delivery.next_attempt_at <= now,
        ),
        and_(Delivery.status == DeliveryStatus.SENDING.value, Delivery.lease_expires_at < now),
    )



def issue_filter(issue_id: int | None, kind: str | None = None) -> Any:
    """Which rows a worker works on: one issue's (``issue_id``); only confirmations (``kind``
    ``confirmation``); only copies of sending issues (``kind`` ``issue``); or, with neither,
    copies of every sending issue and every confirmation."""
    if issue_id is not None:
        return Delivery.issue_id == issue_id
    confirmations = Delivery.kind != DeliveryKind.ISSUE.value  # and the reader's own mail
    if kind == DeliveryKind.CONFIRMATION.value:
        return confirmations
    sending = select(Issue.id).where(Issue.status == IssueStatus.SENDING.value)
    copies = Delivery.issue_id.in_(sending.scalar_subquery())
    if kind == DeliveryKind.ISSUE.value:
        return copies
    return or_(copies, confirmations)

def released_status() -> Any:
    return case(
        (T.c.attempts > 0, DeliveryStatus.DEFERRED.value), else_=DeliveryStatus.QUEUED.value
    )

def aware(value: dt.datetime | str) -> dt.datetime:
    # Aggregates bypass the column type on SQLite: parse the stored UTC text ourselves.
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
