"""The week claim: the database, not APScheduler, allows one issue per send week.

``Issue.send_week`` is unique. A daemon claims a week by inserting its issue row (composed,
skipped or missed) and committing; an ``IntegrityError`` means another daemon got there first.
These helpers take a session and never commit: the job that calls them owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import exists, func, select

from ..models import Issue, IssueStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def week_issue(session: Session, send_week: dt.date) -> Issue | None:
    """The issue row that holds ``send_week``, if any."""
    return session.scalars(select(Issue).where(Issue.send_week == send_week)).one_or_none()


def any_issue(session: Session) -> bool:
    """Whether the database holds any issue at all (false on a fresh installation)."""
    return bool(session.scalar(select(exists().where(Issue.id.is_not(None)))))


def last_recorded_week(session: Session) -> dt.date | None:
    """The latest send week that has an issue row (``None`` on a fresh installation)."""
    return session.scalar(select(func.max(Issue.send_week)))


def sent_source_keys(session: Session) -> set[str]:
    """The ``source_key`` of every issue composed so far (to pick an article not yet sent)."""
    keys = session.scalars(select(Issue.source_key).where(Issue.source_key != "")).all()
    return set(keys)


def record_week(
    session: Session,
    send_week: dt.date,
    *,
    status: IssueStatus,
    reason: str,
    now: dt.datetime,
) -> Issue:
    """Claim ``send_week`` with an issue that sends nothing (``skipped`` or ``missed``).

    Flushes, so a competing claim raises ``IntegrityError`` here.
    """
    if status not in (IssueStatus.SKIPPED, IssueStatus.MISSED):
        raise ValueError(f"record_week records skipped or missed weeks, not {status}")
    issue = Issue(
        send_week=send_week,
        status=status.value,
        reason=reason,
        created_at=now,
        finished_at=now,
    )
    session.add(issue)
    session.flush()
    return issue
