"""The outbox seen per issue: how many rows are where, when the next is due, which are stale or
still leased, finishing an issue, and retrying its failures. Part of the outbox package
(re-exported there); like it, every function takes a session and never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import and_, func, insert, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from weekly_mailer.store.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
)
from weekly_mailer.store.outbox.rows import (
    DUE_STATES,
    OPEN_STATES,
    StaleRow,
    T,
    aware,
    issue_filter,
)


def enqueue(session: Session, issue: Issue, *, now: dt.datetime) -> int:
    """Add one queued row per active subscriber (one INSERT…SELECT); returns rows added.

    Idempotent: subscribers who already have a row for the issue are left alone. Moves the
    issue to ``sending`` and stamps ``enqueued_at``.

    The first enqueue of an issue (the usual case) is a plain INSERT…SELECT: a million rows
    take seconds, the cost being the indexes and the two foreign-key checks per row. A repeat
    skips the rows present through ``ON CONFLICT DO NOTHING`` on (issue, subscriber). (A
    ``NOT EXISTS`` on the table being filled was planned as a nested loop over it: quadratic.)
    """
    rows = select(
        literal(issue.id),
        Subscriber.id,
        literal(DeliveryStatus.QUEUED.value),
        literal(0),
        literal(now, type_=Delivery.created_at.type),
        literal(now, type_=Delivery.next_attempt_at.type),
        literal(""),
    ).where(
        Subscriber.status == SubscriberStatus.ACTIVE.value,
        Subscriber.paused_issues == 0,  # a pause (subscribers.reader) skips the reader
        or_(Subscriber.paused_until.is_(None), Subscriber.paused_until <= now),
    )
    columns = ["issue_id", "subscriber_id", "status", "attempts", "created_at"]
    columns += ["next_attempt_at", "last_error"]
    any_row = select(literal(1)).where(Delivery.issue_id == issue.id).limit(1)
    stmt: Any
    if session.scalar(any_row) is None:
        stmt = insert(T).from_select(columns, rows)
    else:
        dialect_insert = (
            pg_insert if session.get_bind().dialect.name == "postgresql" else (sqlite_insert)
        )
        stmt = (
            dialect_insert(T)
            .from_select(columns, rows)
            .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
        )
    result = session.connection().execute(stmt.execution_options(preserve_rowcount=True))
    added = int(result.rowcount or 0)
    issue.status = IssueStatus.SENDING.value
    issue.enqueued_at = issue.enqueued_at or now
    issue.finished_at = None
    session.flush()
    return added


def fail_stale(
    session: Session,
    *,
    now: dt.datetime,
    max_age: dt.timedelta,
    issue_id: int | None = None,
    kind: str | None = None,
) -> int:
    """Fail the open, unleased rows waiting longer than ``max_age`` (``retry_give_up_hours``);
    returns how many. See :func:`fail_stale_rows`."""
    return len(fail_stale_rows(session, now=now, max_age=max_age, issue_id=issue_id, kind=kind))


def fail_stale_rows(
    session: Session,
    *,
    now: dt.datetime,
    max_age: dt.timedelta,
    issue_id: int | None = None,
    kind: str | None = None,
    also: Any = None,
) -> list[StaleRow]:
    """Fail the open, unleased rows waiting longer than ``max_age`` (``retry_give_up_hours``);
    returns them (id, kind, subscriber), so that a confirmation given up on can be undone.
    ``also``: a further condition the rows must meet (``pacing.spared``: not a row waiting on
    the pace).

    A row's age is counted from its first failure, or, never tried, from when it was queued
    (enqueue, or ``issues retry``, which is the explicit way to send a stale row anyway). So an
    issue whose send stalled for days is not sent days late when a worker comes back.
    """
    cutoff = now - max_age
    since = func.coalesce(Delivery.first_failure_at, Delivery.next_attempt_at)
    result = session.execute(
        update(Delivery)
        .where(
            issue_filter(issue_id, kind),
            or_(
                Delivery.status.in_([s.value for s in DUE_STATES]),
                and_(
                    Delivery.status == DeliveryStatus.SENDING.value,
                    Delivery.lease_expires_at < now,
                ),
            ),
            since < cutoff,
            *([] if also is None else [also]),
        )
        .values(
            status=DeliveryStatus.FAILED.value,
            last_error=f"stale: not sent within retry_give_up_hours "
            f"({max_age.total_seconds() / 3600:g}h) of being queued or first failing; "
            "`weekly-mailer issues retry` sends it anyway",
            lease_owner=None,
            lease_expires_at=None,
        )
        .returning(Delivery.id, Delivery.kind, Delivery.subscriber_id)
        .execution_options(synchronize_session=False)
    )
    return [StaleRow(int(i), str(k), int(s)) for i, k, s in result]


def leased_rows(
    session: Session, issue_id: int, *, now: dt.datetime
) -> tuple[int, dt.datetime | None]:
    """Rows of the issue leased to a worker (``sending``, lease not yet expired): how many, and
    when the last of those leases expires. A rerun after a crash waits for them."""
    n, until = session.execute(
        select(func.count(), func.max(Delivery.lease_expires_at)).where(
            Delivery.issue_id == issue_id,
            Delivery.status == DeliveryStatus.SENDING.value,
            Delivery.lease_expires_at >= now,
        )
    ).one()
    return int(n), None if until is None else aware(until)


def next_due(
    session: Session, *, issue_id: int | None = None, kind: str | None = None
) -> dt.datetime | None:
    """When the next open row becomes claimable (``None`` when nothing is open)."""
    due = select(
        func.min(Delivery.next_attempt_at).filter(
            Delivery.status.in_([s.value for s in DUE_STATES])
        ),
        func.min(Delivery.lease_expires_at).filter(Delivery.status == DeliveryStatus.SENDING.value),
    ).where(issue_filter(issue_id, kind))
    first, lease = session.execute(due).one()
    times = [t for t in (first, lease) if t is not None]
    if not times:
        return None
    return aware(min(times))


def counts(session: Session, issue_id: int) -> dict[str, int]:
    """Rows per delivery state for one issue (every state present, zeros included), with
    those of its rows that ``issues archive`` moved out (kept on the issue row)."""
    archived = session.scalar(select(Issue.archived_counts).where(Issue.id == issue_id))
    found: dict[str, int] = {k: int(v) for k, v in (archived or {}).items()}
    for status, n in session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.issue_id == issue_id)
        .group_by(Delivery.status)
    ):
        found[status] = found.get(status, 0) + int(n)
    return {s.value: int(found.get(s.value, 0)) for s in DeliveryStatus}


def finish_done(session: Session, *, now: dt.datetime, issue_ids: Iterable[int] = ()) -> list[int]:
    """Mark ``sending`` issues with no open rows left as ``sent``; returns their ids.

    One conditional UPDATE: an ``issues retry`` that queued rows meanwhile keeps its issue in
    ``sending`` (no select-then-write race).
    """
    open_rows = select(literal(1)).where(
        Delivery.issue_id == Issue.id,
        Delivery.status.in_([s.value for s in OPEN_STATES]),
    )
    stmt = (
        update(Issue)
        .where(Issue.status == IssueStatus.SENDING.value, ~open_rows.exists())
        .values(status=IssueStatus.SENT.value, finished_at=now)
        .returning(Issue.id)
        .execution_options(synchronize_session=False)
    )
    wanted = list(issue_ids)
    if wanted:
        stmt = stmt.where(Issue.id.in_(wanted))
    done = [int(i) for i in session.scalars(stmt)]
    for issue in session.identity_map.values():  # keep loaded objects truthful
        if isinstance(issue, Issue) and issue.id in done:
            session.expire(issue, ["status", "finished_at"])
    return done


def refused(issue_id: int) -> Any:
    """Rows the server refused with a 5xx: ``issues retry`` leaves them alone unless asked."""
    return and_(
        Delivery.issue_id == issue_id,
        Delivery.status == DeliveryStatus.FAILED.value,
        func.coalesce(Delivery.last_code, 0).between(500, 599),
    )


def retry(
    session: Session, issue: Issue, *, now: dt.datetime, include_refused: bool = False
) -> int:
    """Queue the issue's failed and deferred rows again, due now; returns how many.

    Rows refused with a 5xx (a bounce or a policy refusal) stay failed unless
    ``include_refused``. Their first-failure time is reset, so they are not stale at once.
    """
    wanted = [
        Delivery.issue_id == issue.id,
        Delivery.status.in_([DeliveryStatus.FAILED.value, DeliveryStatus.DEFERRED.value]),
    ]
    if not include_refused:
        wanted.append(~refused(issue.id))
    result = session.execute(
        update(Delivery)
        .where(*wanted)
        .values(
            status=DeliveryStatus.QUEUED.value,
            next_attempt_at=now,
            first_failure_at=None,
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    n = int(cast(CursorResult[Any], result).rowcount or 0)
    if n:
        issue.status = IssueStatus.SENDING.value
        issue.finished_at = None
        session.flush()
    return n
