"""The issue service: compose the week's issue, store it and enqueue it (``prepare_week``).

Functions take a session and never commit; the CLI, the scheduler or the demo own the
transaction. Composition happens once per issue (see :mod:`weekly_mailer.compose`); a lint
error stops the issue before anything is stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from weekly_mailer.compose import ComposedIssue, compose_issue
from weekly_mailer.errors import ComposeError
from weekly_mailer.issues.ledger import get_issue, store_issue
from weekly_mailer.issues.weeks import scheduled_send_at
from weekly_mailer.store import outbox

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.articles import Article
    from weekly_mailer.config import Settings
    from weekly_mailer.store.models import Issue


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


def retry(session: Session, issue_id: int, *, now: dt.datetime) -> int:
    """Queue the issue's failed and deferred rows again (due now); returns how many."""
    return outbox.retry(session, get_issue(session, issue_id), now=now)
