"""The week ledger: one issue row per send week, stored, filled, looked up, recorded empty; and
the holds the list-health guard puts on the weekly send (``week_hold``), placed and released.

``Issue.send_week`` is unique. A daemon (or ``send``) claims a week by inserting its issue row
(composed, skipped or missed) and committing; an ``IntegrityError`` means another process got
there first. Functions take a session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from weekly_mailer.errors import IssueNotFoundError
from weekly_mailer.issues.keys import source_key
from weekly_mailer.store.hold_models import WeekHold
from weekly_mailer.store.models import Issue, IssueStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.articles import Article
    from weekly_mailer.compose import ComposedIssue


# A week recorded with no issue sent: ``send --force-week`` may turn its row into the issue.
RECORDED_EMPTY = (IssueStatus.SKIPPED.value, IssueStatus.MISSED.value)


def issue_for_week(session: Session, send_week: dt.date) -> Issue | None:
    """The issue row that holds ``send_week``, if any."""
    return session.scalars(select(Issue).where(Issue.send_week == send_week)).one_or_none()


def get_issue(session: Session, issue_id: int) -> Issue:
    issue = session.get(Issue, issue_id)
    if issue is None:
        raise IssueNotFoundError(f"there is no issue {issue_id} (see `weekly-mailer issues list`)")
    return issue


def store_issue(
    session: Session,
    article: Article,
    composed: ComposedIssue,
    *,
    send_week: dt.date,
    now: dt.datetime,
    source: str = "",
    source_key: str = "",
) -> Issue:
    """Insert the composed issue (status ``ready``). Flushes: a second issue for the same week
    raises ``IntegrityError`` here. ``source_key`` defaults to :func:`source_key`."""
    issue = Issue(
        send_week=send_week,
        status=IssueStatus.READY.value,
        created_at=now,
        **_composed_fields(article, composed, source=source, key=source_key),
    )
    session.add(issue)
    session.flush()
    return issue


def fill_recorded_week(
    session: Session,
    issue_id: int,
    article: Article,
    composed: ComposedIssue,
    *,
    now: dt.datetime,
    source: str = "",
    source_key: str = "",
) -> Issue | None:
    """Turn a week recorded as ``skipped`` or ``missed`` into its real issue (status ``ready``).

    The row changes only while it is still skipped or missed (one conditional UPDATE), so a
    week that another process filled or sent meanwhile is never sent twice: ``None`` then.
    """
    result = session.execute(
        update(Issue)
        .where(Issue.id == issue_id, Issue.status.in_(RECORDED_EMPTY))
        .values(status=IssueStatus.READY.value)
        .execution_options(synchronize_session=False)
    )
    if int(cast(CursorResult[Any], result).rowcount or 0) != 1:
        return None
    issue = session.get(Issue, issue_id, populate_existing=True)
    assert issue is not None
    for name, value in _composed_fields(article, composed, source=source, key=source_key).items():
        setattr(issue, name, value)
    issue.reason = ""
    issue.created_at = now
    issue.enqueued_at = issue.finished_at = None
    session.flush()
    return issue


def _composed_fields(
    article: Article, composed: ComposedIssue, *, source: str, key: str
) -> dict[str, Any]:
    source = source or article.source
    return {
        "subject": composed.subject,
        "title": article.title,
        "slug": _slug(article.title),
        "source": source,
        "source_key": key or source_key(source, article),
        "canonical_url": article.canonical_url,
        "author": article.author,
        "summary": article.summary,
        "published_at": article.date,
        "article": article.to_dict(),
        "html_template": composed.html_template,
        "text_template": composed.text_template,
        "archive_html": composed.archive_html,
        "skeleton": composed.skeleton,
    }


def _slug(title: str) -> str:
    words = "".join(c.lower() if c.isalnum() else " " for c in title).split()
    return "-".join(words)[:80]




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


# Holds: an unreleased ``week_hold`` row holds every new issue until an operator releases it.
# The list-health guard's name an issue; the pre-flight's (``preflight = "refuse"``) name none
# and their reason starts with this.
PREFLIGHT_REASON = "pre-flight: "


def active_holds(session: Session) -> list[WeekHold]:
    """The holds not released yet, oldest held week first."""
    query = select(WeekHold).where(WeekHold.released_at.is_(None))
    return list(session.scalars(query.order_by(WeekHold.send_week, WeekHold.id)))


def recent_holds(session: Session, *, limit: int = 10) -> list[WeekHold]:
    """The latest holds, released or not, newest first."""
    query = select(WeekHold).order_by(WeekHold.held_at.desc(), WeekHold.id.desc())
    return list(session.scalars(query.limit(limit)))


def holds_of(session: Session, issue_ids: list[int]) -> set[int]:
    """Which of ``issue_ids`` already held the send (released or not): an issue holds once."""
    if not issue_ids:
        return set()
    query = select(WeekHold.issue_id).where(WeekHold.issue_id.in_(issue_ids))
    return {int(i) for i in session.scalars(query) if i is not None}


def next_unsent_week(session: Session, after: dt.date) -> dt.date:
    """The first send week after ``after`` whose issue was not enqueued (the next send)."""
    enqueued = set(
        session.scalars(
            select(Issue.send_week).where(
                Issue.send_week > after,
                Issue.status.in_([IssueStatus.SENDING.value, IssueStatus.SENT.value]),
            )
        )
    )
    week = after + dt.timedelta(days=7)
    while week in enqueued:
        week += dt.timedelta(days=7)
    return week


def released_preflight(session: Session, week: dt.date) -> bool:
    """Whether an operator released a pre-flight hold of ``week`` (it then sends as it is)."""
    query = select(WeekHold.id).where(
        WeekHold.send_week == week,
        WeekHold.issue_id.is_(None),
        WeekHold.released_at.is_not(None),
        WeekHold.reason.startswith(PREFLIGHT_REASON),
    )
    return session.scalar(query.limit(1)) is not None


def place_hold(session: Session, hold: WeekHold) -> WeekHold | None:
    """Insert ``hold``; ``None`` when its issue holds the send already (another process won)."""
    try:
        with session.begin_nested():
            session.add(hold)
            session.flush()
    except IntegrityError:
        return None
    return hold


def release_holds(
    session: Session, *, by: str, now: dt.datetime, week: dt.date | None = None
) -> list[WeekHold]:
    """Release the unreleased holds (those of the held ``week`` only, when given); returns them."""
    holds = [h for h in active_holds(session) if week is None or h.send_week == week]
    for hold in holds:
        hold.released_at, hold.released_by = now, by[:200]
    session.flush()
    return holds
