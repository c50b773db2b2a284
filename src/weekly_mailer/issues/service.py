"""The issue service's building blocks: the week's window, compose once, enqueue, retry.

``prepare_week`` (in :mod:`.prepare`) puts them together for ``send``, ``demo`` and the daemon.
Functions take a session and never commit; the CLI, the scheduler or the demo own the
transaction. Composition happens once per issue (see :mod:`weekly_mailer.compose`); a lint
error stops the issue before anything is stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from weekly_mailer.compose import ComposedIssue, compose_issue
from weekly_mailer.errors import ComposeError
from weekly_mailer.issues.ledger import get_issue
from weekly_mailer.issues.weeks import scheduled_send_at
from weekly_mailer.store import outbox
from weekly_mailer.store.outbox.pacing import Forecast, Pace, forecast

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


@dataclasses.dataclass(frozen=True, slots=True)
class Retried:
    """What ``retry`` did: rows queued again, and rows refused with a 5xx left failed."""

    queued: int
    refused_left: int


def retry(
    session: Session, issue_id: int, *, now: dt.datetime, include_refused: bool = False
) -> Retried:
    """Queue the issue's failed and deferred rows again (due now).

    Rows refused with a 5xx stay failed unless ``include_refused``; stale rows are queued too.
    """
    queued = outbox.retry(
        session, get_issue(session, issue_id), now=now, include_refused=include_refused
    )
    left = session.scalar(select(func.count()).where(outbox.refused(issue_id))) or 0
    return Retried(queued, int(left))


def pace_forecast(
    session: Session, settings: Settings, issue_id: int, *, now: dt.datetime
) -> Forecast | None:
    """When the issue's waiting rows should have gone under ``daily_quota`` and the warm-up
    (``store.outbox.pacing.forecast``); ``None`` without a pace or with nothing waiting."""
    return forecast(session, Pace.of(settings), issue_id, now=now)
