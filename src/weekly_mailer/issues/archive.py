"""The public archive's queries: the published issues, one issue by week, id or slug.

Only issues that went out (``sent``, or ``sending``) are published. The web layer renders what
these return; it writes no SQL itself. Functions take a session and never commit.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from weekly_mailer.config import Settings
from weekly_mailer.issues.weeks import scheduled_send_at
from weekly_mailer.store.models import Issue, IssueStatus

PUBLISHED = (IssueStatus.SENT.value, IssueStatus.SENDING.value)
_WEEK_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_MAX_ID_DIGITS = 11
_MAX_SLUG = 200


def published(session: Session, *, limit: int | None = None) -> list[Issue]:
    """The published issues, newest send week first (at most ``limit``)."""
    stmt = (
        select(Issue)
        .where(Issue.status.in_(PUBLISHED))
        .order_by(Issue.send_week.desc(), Issue.id.desc())
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def find_published(session: Session, ident: str) -> Issue | None:
    """The published issue named by send week (``2026-11-25``), id, or slug (the newest).

    An id is ASCII digits only: ``str.isdigit`` also accepts ``²`` or ``①``, which ``int`` refuses.
    """
    stmt = select(Issue).where(Issue.status.in_(PUBLISHED))
    if _WEEK_RE.match(ident):
        try:
            week = dt.date.fromisoformat(ident)
        except ValueError:
            return None
        return session.scalars(stmt.where(Issue.send_week == week)).first()
    if ident.isascii() and ident.isdigit() and len(ident) <= _MAX_ID_DIGITS:
        return session.scalars(stmt.where(Issue.id == int(ident))).first()
    if len(ident) > _MAX_SLUG:
        return None
    return session.scalars(stmt.where(Issue.slug == ident).order_by(Issue.send_week.desc())).first()


def sent_at(issue: Issue, settings: Settings) -> dt.datetime:
    """When the issue went out, for the archive list and the feed (not the article's date).

    The moment it was queued, else the scheduled send time of its send week (UTC).
    """
    if issue.enqueued_at is not None:
        return issue.enqueued_at.astimezone(dt.UTC)
    return scheduled_send_at(issue.send_week, settings).astimezone(dt.UTC)
