"""The outbox: one delivery row per (issue, subscriber), and every state change on it.

::

    queued ──claim──> sending ──record──> sent | deferred | failed
       ^                 │  └─ subscriber no longer active ──> skipped
       │                 └─ lease expired (worker died) ──> claimable again
       └── release (worker stopped) / retry (failed, deferred) ──┘
    deferred ──(next_attempt_at passes)──> claimable again

Every function takes a session and never commits: the caller owns the transaction. Claims and
results are set-based (one statement per batch, an executemany for results), never a commit per
message. On PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED``; SQLite serialises writers with
``BEGIN IMMEDIATE`` (see ``db.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, func, insert, literal, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from ..models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
)
from ..subscribers import note_bounce

OPEN_STATES = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)
_T = cast(Table, Delivery.__table__)


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedRow:
    """A delivery claimed by one worker, with what is needed to personalise its message."""

    delivery_id: int
    issue_id: int
    subscriber_id: int
    email: str
    email_key: str
    name: str
    attempts: int
    first_failure_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt, written back in a batch by :func:`record`.

    ``status`` is ``sent``, ``deferred``, ``failed`` or ``queued`` (handed back untried).
    """

    row: ClaimedRow
    status: str
    code: int | None = None
    error: str = ""
    next_attempt_at: dt.datetime | None = None
    bounce: bool = False
    at: dt.datetime | None = None


def enqueue(session: Session, issue: Issue, *, now: dt.datetime) -> int:
    """Add one queued row per active subscriber (one INSERT…SELECT); returns rows added.

    Idempotent: subscribers who already have a row for the issue are left alone. Moves the
    issue to ``sending`` and stamps ``enqueued_at``.
    """
    already = select(literal(1)).where(
        Delivery.issue_id == issue.id, Delivery.subscriber_id == Subscriber.id
    )
    rows = select(
        literal(issue.id),
        Subscriber.id,
        literal(DeliveryStatus.QUEUED.value),
        literal(0),
        literal(now, type_=Delivery.created_at.type),
        literal(now, type_=Delivery.next_attempt_at.type),
        literal(""),
    ).where(Subscriber.status == SubscriberStatus.ACTIVE.value, ~already.exists())
    stmt = (
        insert(_T)
        .from_select(
            ["issue_id", "subscriber_id", "status", "attempts", "created_at", "next_attempt_at"]
            + ["last_error"],
            rows,
        )
        .execution_options(preserve_rowcount=True)
    )
    added = session.connection().execute(stmt).rowcount or 0
    issue.status = IssueStatus.SENDING.value
    issue.enqueued_at = issue.enqueued_at or now
    issue.finished_at = None
    session.flush()
    return int(added)


def _claimable(now: dt.datetime) -> Any:
    return or_(
        and_(
            Delivery.status.in_([DeliveryStatus.QUEUED.value, DeliveryStatus.DEFERRED.value]),
            Delivery.next_attempt_at <= now,
        ),
        and_(Delivery.status == DeliveryStatus.SENDING.value, Delivery.lease_expires_at < now),
    )


def _issue_filter(issue_id: int | None) -> Any:
    if issue_id is not None:
        return Delivery.issue_id == issue_id
    sending = select(Issue.id).where(Issue.status == IssueStatus.SENDING.value)
    return Delivery.issue_id.in_(sending.scalar_subquery())


def claim(
    session: Session,
    *,
    owner: str,
    now: dt.datetime,
    lease_seconds: float,
    limit: int,
    issue_id: int | None = None,
) -> tuple[list[ClaimedRow], int]:
    """Lease up to ``limit`` due rows to ``owner``; returns them and how many were skipped.

    Rows whose subscriber is no longer active are marked ``skipped`` here, at send time.
    """
    pick = (
        select(Delivery.id)
        .where(_issue_filter(issue_id), _claimable(now))
        .order_by(Delivery.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list(session.scalars(pick))
    if not ids:
        return [], 0
    found = session.execute(
        select(
            Delivery.id,
            Delivery.issue_id,
            Delivery.subscriber_id,
            Delivery.attempts,
            Delivery.first_failure_at,
            Subscriber.email,
            Subscriber.email_key,
            Subscriber.name,
            Subscriber.status,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.id)
    ).all()
    rows: list[ClaimedRow] = []
    inactive: list[int] = []
    for r in found:
        if r.status != SubscriberStatus.ACTIVE.value:
            inactive.append(r.id)
            continue
        rows.append(
            ClaimedRow(
                r.id, r.issue_id, r.subscriber_id, r.email, r.email_key, r.name or "",
                r.attempts, r.first_failure_at,
            )
        )  # fmt: skip
    if inactive:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(inactive))
            .values(
                status=DeliveryStatus.SKIPPED.value,
                last_error="subscriber is no longer active",
                lease_owner=None,
                lease_expires_at=None,
            )
        )
    if rows:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_([r.delivery_id for r in rows]))
            .values(
                status=DeliveryStatus.SENDING.value,
                lease_owner=owner,
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
            )
        )
    return rows, len(inactive)


def record(
    session: Session,
    outcomes: Sequence[Outcome],
    *,
    owner: str,
    now: dt.datetime,
    bounce_limit: int,
) -> None:
    """Write a batch of results: one executemany per kind of outcome, then bounce bookkeeping.

    A ``sent`` result is written whoever holds the lease now (it is the truth); the others only
    while ``owner`` still holds it.
    """
    by_status: dict[str, list[dict[str, Any]]] = {}
    for o in outcomes:
        by_status.setdefault(o.status, []).append(
            {
                "b_id": o.row.delivery_id,
                "b_code": o.code,
                "b_error": o.error[:2000],
                "b_next": o.next_attempt_at,
                "b_at": o.at or now,
            }
        )
    mine = and_(_T.c.lease_owner == owner, _T.c.status == DeliveryStatus.SENDING.value)
    cleared = {"lease_owner": None, "lease_expires_at": None}
    if params := by_status.get(DeliveryStatus.SENT.value):
        session.execute(
            update(_T)
            .where(_T.c.id == bindparam("b_id"))
            .values(
                status=DeliveryStatus.SENT.value,
                sent_at=bindparam("b_at"),
                last_code=bindparam("b_code"),
                last_error="",
                attempts=_T.c.attempts + 1,
                **cleared,
            ),
            params,
        )
        delivered = sorted({o.row.subscriber_id for o in outcomes if o.status == "sent"})
        session.execute(  # a delivery that works shows the old bounces were transient
            update(Subscriber)
            .where(Subscriber.id.in_(delivered), Subscriber.bounce_count > 0)
            .values(bounce_count=0)
            .execution_options(synchronize_session=False)
        )
    for status in (DeliveryStatus.DEFERRED.value, DeliveryStatus.FAILED.value):
        if params := by_status.get(status):
            session.execute(
                update(_T)
                .where(_T.c.id == bindparam("b_id"), mine)
                .values(
                    status=status,
                    last_code=bindparam("b_code"),
                    last_error=bindparam("b_error"),
                    next_attempt_at=bindparam("b_next"),
                    first_failure_at=func.coalesce(_T.c.first_failure_at, bindparam("b_at")),
                    attempts=_T.c.attempts + 1,
                    **cleared,
                ),
                params,
            )
    if params := by_status.get(DeliveryStatus.QUEUED.value):
        # Handed back untried: a row that failed before goes back to deferred.
        session.execute(
            update(_T)
            .where(_T.c.id == bindparam("b_id"), mine)
            .values(status=_released_status(), **cleared),
            params,
        )
    bounced = [o.row.subscriber_id for o in outcomes if o.bounce]
    if bounced:
        note_bounce(session, bounced, limit=bounce_limit, detail="hard bounce during delivery")


def _released_status() -> Any:
    return case(
        (_T.c.attempts > 0, DeliveryStatus.DEFERRED.value), else_=DeliveryStatus.QUEUED.value
    )


def extend_lease(session: Session, *, owner: str, now: dt.datetime, lease_seconds: float) -> None:
    """Push back the expiry of every row ``owner`` still holds."""
    session.execute(
        update(Delivery)
        .where(Delivery.lease_owner == owner, Delivery.status == DeliveryStatus.SENDING.value)
        .values(lease_expires_at=now + dt.timedelta(seconds=lease_seconds))
    )


def release(session: Session, *, owner: str) -> int:
    """Hand every row ``owner`` holds back to the queue (queued, or deferred if tried before)."""
    result = session.execute(
        update(_T)
        .where(_T.c.lease_owner == owner, _T.c.status == DeliveryStatus.SENDING.value)
        .values(status=_released_status(), lease_owner=None, lease_expires_at=None)
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)


def _aware(value: dt.datetime | str) -> dt.datetime:
    # Aggregates bypass the column type on SQLite: parse the stored UTC text ourselves.
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


from .issue_rows import (  # noqa: E402 - the per-issue half of the outbox, re-exported
    counts,
    fail_stale,
    finish_done,
    leased_rows,
    next_due,
    refused,
    retry,
)

__all__ = [
    "OPEN_STATES",
    "ClaimedRow",
    "Outcome",
    "claim",
    "counts",
    "enqueue",
    "extend_lease",
    "fail_stale",
    "finish_done",
    "leased_rows",
    "next_due",
    "record",
    "refused",
    "release",
    "retry",
]
