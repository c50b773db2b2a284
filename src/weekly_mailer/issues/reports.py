"""Reports on issues: per-state counts, failures with the server's reply, samples of addresses.

Every function takes a session and only reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from weekly_mailer.store import outbox
from weekly_mailer.store.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    Subscriber,
    SubscriberStatus,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def active_count(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(Subscriber.status == SubscriberStatus.ACTIVE.value)
        )
        or 0
    )


def active_sample(session: Session, limit: int = 10) -> list[str]:
    return list(
        session.scalars(
            select(Subscriber.email)
            .where(Subscriber.status == SubscriberStatus.ACTIVE.value)
            .order_by(Subscriber.id)
            .limit(limit)
        )
    )


def open_sample(session: Session, issue_id: int, limit: int = 10) -> list[str]:
    """Addresses whose rows are still queued, deferred or sending."""
    return list(
        session.scalars(
            select(Subscriber.email)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(
                Delivery.issue_id == issue_id,
                Delivery.status.in_([s.value for s in outbox.OPEN_STATES]),
            )
            .order_by(Delivery.id)
            .limit(limit)
        )
    )


def counts(session: Session, issue_id: int) -> dict[str, int]:
    """Rows per delivery state (every state, zeros included)."""
    return outbox.counts(session, issue_id)


def open_count(session: Session, issue_id: int) -> int:
    """Rows still to deliver: those in the outbox's open states (``outbox.OPEN_STATES``)."""
    c = outbox.counts(session, issue_id)
    return sum(c[state.value] for state in outbox.OPEN_STATES)


@dataclasses.dataclass(frozen=True)
class FailureRow:
    email: str
    status: str
    attempts: int
    code: int | None
    error: str
    next_attempt_at: dt.datetime | None


def failures(session: Session, issue_id: int, *, limit: int = 50) -> list[FailureRow]:
    """Failed and deferred rows with the server's reply, failed first."""
    rows = session.execute(
        select(
            Subscriber.email,
            Delivery.status,
            Delivery.attempts,
            Delivery.last_code,
            Delivery.last_error,
            Delivery.next_attempt_at,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Delivery.issue_id == issue_id,
            Delivery.status.in_([DeliveryStatus.FAILED.value, DeliveryStatus.DEFERRED.value]),
        )
        .order_by(Delivery.status.desc(), Delivery.id)
        .limit(limit)
    ).all()
    return [FailureRow(*r) for r in rows]


def list_issues(session: Session) -> list[tuple[Issue, dict[str, int]]]:
    """Every issue, newest week first, with its per-state counts (one grouped query)."""
    issues = list(session.scalars(select(Issue).order_by(Issue.send_week.desc())))
    grouped: dict[int, dict[str, int]] = {}
    for issue_id, status, n in session.execute(
        select(Delivery.issue_id, Delivery.status, func.count())
        .where(Delivery.issue_id.is_not(None))  # confirmation rows belong to no issue
        .group_by(Delivery.issue_id, Delivery.status)
    ):
        grouped.setdefault(int(issue_id or 0), {})[status] = int(n)
    for i in issues:  # rows moved out by `issues archive` count too
        for status, n in (i.archived_counts or {}).items():
            mine = grouped.setdefault(i.id, {})
            mine[status] = mine.get(status, 0) + int(n)
    return [
        (i, {s.value: grouped.get(i.id, {}).get(s.value, 0) for s in DeliveryStatus})
        for i in issues
    ]
