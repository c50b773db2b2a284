"""Issues: compose and store the issue of a send week, enqueue it, and report on it.

Functions take a session and never commit; the CLI, the scheduler or the demo own the
transaction. Composition happens once per issue (see :mod:`weekly_mailer.compose`); a lint
error stops the issue before anything is stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, func, select, update

from .articles import FEED_SUFFIXES
from .articles.feed import is_url
from .compose import ComposedIssue, compose_issue
from .delivery import outbox
from .errors import ComposeError, WeeklyMailerError
from .models import Delivery, DeliveryStatus, Issue, IssueStatus, Subscriber, SubscriberStatus
from .weeks import scheduled_send_at

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .articles import Article
    from .config import Settings


class IssueNotFoundError(WeeklyMailerError):
    """No issue has the given id."""


# A week recorded with no issue sent: ``send --force-week`` may turn its row into the issue.
RECORDED_EMPTY = (IssueStatus.SKIPPED.value, IssueStatus.MISSED.value)


def is_feed_source(source: str) -> bool:
    """Whether ``source`` names a feed (a URL, or a ``.xml``/``.rss``/``.atom`` file)."""
    return is_url(source) or source.lower().endswith(FEED_SUFFIXES)


def feed_key(article: Article) -> str:
    """A feed item's identity: its link, else its title and date."""
    when = article.date.isoformat() if article.date else ""
    return (article.canonical_url or f"{article.title}|{when}")[:500]


def file_key(path: Path) -> str:
    """A file's identity: its name and a hash of its content (an edited file is new)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"file:{path.name[:400]}:{digest}"


def file_key_name(key: str) -> str | None:
    """The file name inside a :func:`file_key` (``None`` for any other key)."""
    if not key.startswith("file:"):
        return None
    return key[len("file:") :].rpartition(":")[0]


def source_key(source: str, article: Article) -> str:
    """The ``Issue.source_key`` of an article read from ``source``: what "already sent" compares.

    The one definition used by ``send``, ``demo`` and the daemon, so that an article sent by one
    of them is recognised by the others: a feed item is :func:`feed_key`, a file (given alone
    or found in a folder) is :func:`file_key`.
    """
    if source and is_feed_source(source):
        return feed_key(article)
    path = Path(source or article.source)
    try:
        return file_key(path)
    except OSError:  # not a readable file (an article built in memory): its name will do
        return (source or article.source or article.canonical_url)[:500]


def week_window(send_week: dt.date, settings: Settings) -> tuple[dt.datetime, dt.datetime]:
    """The publication window of a week's article: from the previous scheduled send to this one."""
    end = scheduled_send_at(send_week, settings)
    start = scheduled_send_at(send_week - dt.timedelta(days=7), settings)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def compose(article: Article, settings: Settings, *, send_week: dt.date) -> ComposedIssue:
    """Compose the week's issue; ``ComposeError`` when the lint finds an error (nothing sent)."""
    composed = compose_issue(article, settings, send_week=send_week)
    if composed.lint.hard_failure:
        raise ComposeError(
            "the issue did not pass the checks, nothing was sent: "
            + "; ".join(composed.lint.errors)
        )
    return composed


def issue_for_week(session: Session, send_week: dt.date) -> Issue | None:
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


def enqueue(session: Session, issue: Issue, *, now: dt.datetime) -> int:
    """Queue one delivery per active subscriber (idempotent); returns rows added."""
    return outbox.enqueue(session, issue, now=now)


def issue_maker(settings: Settings) -> Callable[..., tuple[Issue, int]]:
    """For the scheduler's weekly job: ``make(session, chosen, *, send_week, now)`` composes,
    stores and enqueues the week's issue; returns ``(issue, queued)``."""

    def make(session: Session, chosen: Any, *, send_week: dt.date, now: dt.datetime) -> Any:
        composed = compose(chosen.article, settings, send_week=send_week)
        issue = store_issue(
            session,
            chosen.article,
            composed,
            send_week=send_week,
            now=now,
            source=chosen.source,
            source_key=chosen.source_key,
        )
        return issue, enqueue(session, issue, now=now)

    return make


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
        select(Delivery.issue_id, Delivery.status, func.count()).group_by(
            Delivery.issue_id, Delivery.status
        )
    ):
        grouped.setdefault(issue_id, {})[status] = int(n)
    return [
        (i, {s.value: grouped.get(i.id, {}).get(s.value, 0) for s in DeliveryStatus})
        for i in issues
    ]


def retry(session: Session, issue_id: int, *, now: dt.datetime) -> int:
    """Queue the issue's failed and deferred rows again (due now); returns how many."""
    return outbox.retry(session, get_issue(session, issue_id), now=now)
