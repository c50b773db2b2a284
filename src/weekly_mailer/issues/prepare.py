"""Prepare a week's issue: the one path for ``send``, ``demo`` and the daemon's weekly job.

Three steps, so that no transaction is held while an article is fetched and composed (on SQLite
every transaction holds the write lock):

1. :func:`look_at_week` (a session): which send week the moment belongs to (the one week rule,
   :func:`~weekly_mailer.issues.weeks.send_week_for`) and what the ledger holds for it. A week
   recorded ``skipped`` or ``missed`` is refused unless ``force_week``. It also runs the
   list-health guard (:func:`~weekly_mailer.issues.health.held`; a hold it places is committed
   with the caller's transaction) and notes whether the guard holds a new issue.
2. :func:`plan_week` (no session): refuses a held week (``WeekHeldError``, exit 3), so
   ``send``, ``demo`` and the daemon's job all obey the guard; then the week's article
   (``issues.sources``; a SOURCE given explicitly, or a folder) composed ONCE, or the week's
   existing issue to continue. A SOURCE that is not what the week's issue was made from is
   refused.
3. :func:`prepare_week` (a session): stores the issue (a new row, or the skipped/missed row
   filled) and enqueues its deliveries in the caller's transaction. Losing the insert race to
   another process continues (or refuses) what that process stored; a new issue with no one
   to send to is refused unless ``allow_empty``.

Between 2 and 3 ``send`` shows a dry run or asks "Send X to N subscribers now?".
Every refusal is a :class:`~weekly_mailer.errors.SendError` (or an ``ArticleError`` /
``ComposeError`` from the article and the composer); nothing here commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from weekly_mailer.articles import load_article
from weekly_mailer.articles.feed import is_url
from weekly_mailer.compose import Recipient, make_message_id, unsubscribe_url
from weekly_mailer.errors import ComposeError, NoArticleError, SendError, WeekHeldError
from weekly_mailer.issues.health import held, refusal
from weekly_mailer.issues.keys import source_key
from weekly_mailer.issues.ledger import (
    RECORDED_EMPTY,
    fill_recorded_week,
    get_issue,
    issue_for_week,
    sent_source_keys,
    store_issue,
)
from weekly_mailer.issues.reports import active_count, active_sample, open_count, open_sample
from weekly_mailer.issues.service import compose, enqueue, week_window
from weekly_mailer.issues.sources import WeekArticle, resolve_week_article
from weekly_mailer.issues.weeks import send_week_for
from weekly_mailer.subscribers.reader import count_issue_for_pauses

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.compose import ComposedIssue
    from weekly_mailer.config import Settings
    from weekly_mailer.store.models import Issue

NO_SUBSCRIBERS = "no active subscribers: nothing to send; the week stays open"
NO_SOURCE = "no article: pass SOURCE or set article_source in the config"


@dataclasses.dataclass(frozen=True, slots=True)
class ExistingIssue:
    """The week's issue as it stood when looked at (``send`` continues it, never re-sends)."""

    id: int
    subject: str
    source: str
    enqueued: bool


@dataclasses.dataclass(frozen=True, slots=True)
class WeekLook:
    """What the ledger holds for the send week of a moment (see :func:`look_at_week`)."""

    week: dt.date
    now: dt.datetime
    existing: ExistingIssue | None
    recorded_id: int | None  # a skipped/missed row that ``force_week`` turns into the issue
    sent_keys: frozenset[str]
    todo: int  # active subscribers, or the deliveries still open of an enqueued issue
    sample: tuple[str, ...]
    held: str = ""  # the list-health guard's refusal of a new issue (plan_week raises it)


@dataclasses.dataclass(frozen=True, slots=True)
class WeekPlan:
    """The week's issue before it is stored: the composed article, or the issue to continue."""

    look: WeekLook
    chosen: WeekArticle | None
    composed: ComposedIssue | None

    @property
    def week(self) -> dt.date:
        return self.look.week

    @property
    def existing(self) -> ExistingIssue | None:
        return self.look.existing

    @property
    def subject(self) -> str:
        if self.composed is not None:
            return self.composed.subject
        assert self.look.existing is not None
        return self.look.existing.subject

    @property
    def todo(self) -> int:
        return self.look.todo

    @property
    def sample(self) -> tuple[str, ...]:
        return self.look.sample

    @property
    def enqueued(self) -> bool:
        """Whether the week's issue exists and its deliveries were queued (a rerun)."""
        return self.look.existing is not None and self.look.existing.enqueued

    @property
    def already_sent(self) -> bool:
        """A rerun with nothing left to deliver."""
        return self.enqueued and self.look.todo == 0

    @property
    def empty(self) -> bool:
        """A new issue with no active subscriber (refused unless ``allow_empty``)."""
        return not self.enqueued and self.look.todo == 0


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """The stored issue; ``queued`` is ``None`` when it was enqueued before (a continued week);
    ``raced`` when another process stored the week first (its issue is this one)."""

    issue: Issue
    queued: int | None
    raced: bool = False


def look_at_week(
    session: Session,
    settings: Settings,
    *,
    now: dt.datetime,
    at: dt.datetime | None = None,
    force_week: bool = False,
) -> WeekLook:
    """The send week of ``at`` (default ``now``) and what the ledger holds for it.

    ``SendError`` when the week is recorded as skipped or missed and not ``force_week``. While
    the list-health guard holds the weekly send, ``held`` says why and :func:`plan_week` refuses
    (not here: a hold the guard just placed must commit); a week whose issue was enqueued
    already is continued, never held: it is no new send.
    """
    week = send_week_for(at or now, settings)
    issue = issue_for_week(session, week)
    recorded_id = None
    if issue is not None and issue.status in RECORDED_EMPTY:
        if not force_week:
            raise SendError(
                f"the week of {week} is recorded as {issue.status}"
                + (f" ({issue.reason})" if issue.reason else "")
                + "; nothing was sent (send it anyway with --force-week)"
            )
        recorded_id, issue = issue.id, None
    hold = held(session, settings, now=now) if issue is None or not issue.enqueued_at else None
    if issue is None:
        existing = None
        todo, sample = active_count(session), active_sample(session)
        sent_keys = frozenset(sent_source_keys(session))
    else:
        existing = ExistingIssue(
            issue.id, issue.subject, issue.source, enqueued=issue.enqueued_at is not None
        )
        sent_keys = frozenset()
        if existing.enqueued:
            todo, sample = open_count(session, issue.id), open_sample(session, issue.id)
        else:
            todo, sample = active_count(session), active_sample(session)
    return WeekLook(
        week,
        now,
        existing,
        recorded_id,
        sent_keys,
        todo,
        tuple(sample),
        held=refusal(hold) if hold is not None else "",
    )


def plan_week(
    look: WeekLook, settings: Settings, *, source: str | None = None, scheduled: bool = False
) -> WeekPlan:
    """Choose and compose the week's article, or keep the week's existing issue.

    ``source`` is a SOURCE given explicitly (a file, a feed, or a folder to choose from);
    ``None`` takes ``settings.article_source`` exactly as the daemon does. With ``scheduled``
    (the daemon's job) no article source at all is a ``NoArticleError`` (the week is skipped);
    for a person it is a ``SendError`` saying what to pass. A week the list-health guard holds
    is a ``WeekHeldError`` (exit 3; ``issues release`` lets it go).
    """
    if look.held:
        raise WeekHeldError(look.held)
    existing = look.existing
    if existing is not None:
        if source and not _same_source(source, existing.source):
            raise SendError(
                _not_used(
                    existing.id, look.week, source, todo=look.todo if existing.enqueued else None
                )
            )
        return WeekPlan(look, None, None)
    src = source or settings.article_source
    if not src.strip():
        raise NoArticleError("article_source is not set") if scheduled else SendError(NO_SOURCE)
    chosen = _choose_article(src, settings, look=look, explicit=bool(source))
    composed = compose(chosen.article, settings, send_week=look.week)
    probe_copy(composed, settings, week=look.week, now=look.now)
    return WeekPlan(look, chosen, composed)


PROBE_ID, PROBE_EMAIL, PROBE_NAME = 1, "reader@example.org", "Probe Reader"


def probe_copy(
    composed: ComposedIssue, settings: Settings, *, week: dt.date, now: dt.datetime
) -> bytes:
    """Personalise one copy for a made-up recipient with the real settings (unsubscribe URL,
    Message-ID), as the worker does for each row: what fails here would fail for every
    recipient, so it fails now, before anything is stored. ``ComposeError``, one line."""
    recipient = Recipient(
        PROBE_ID, PROBE_EMAIL, PROBE_NAME, unsubscribe_url(settings, PROBE_ID, "probe")
    )
    try:
        return composed.message_for(
            recipient,
            message_id=make_message_id(settings, week, PROBE_ID),
            date=now.replace(microsecond=0),
        )
    except ComposeError as exc:
        raise ComposeError(f"cannot compose a copy for any subscriber: {exc}") from exc


def prepare_week(
    session: Session, plan: WeekPlan, *, now: dt.datetime, allow_empty: bool = False
) -> Prepared:
    """Store the planned issue and enqueue its deliveries, in the caller's transaction."""
    raced = False
    if plan.existing is not None:
        issue = get_issue(session, plan.existing.id)
    elif plan.look.recorded_id is not None:
        issue = _fill(session, plan, now=now)
    else:
        issue, raced = _store_new(session, plan, now=now)
    queued = None
    if issue.enqueued_at is None:
        queued = enqueue(session, issue, now=now)
        count_issue_for_pauses(session)  # a reader paused for N issues has one less to skip
        if not queued and not allow_empty:
            raise SendError(NO_SUBSCRIBERS)  # the caller's transaction rolls the row back
    return Prepared(issue, queued, raced)


def _fill(session: Session, plan: WeekPlan, *, now: dt.datetime) -> Issue:
    chosen, composed = plan.chosen, plan.composed
    assert chosen is not None and composed is not None and plan.look.recorded_id is not None
    filled = fill_recorded_week(
        session,
        plan.look.recorded_id,
        chosen.article,
        composed,
        now=now,
        source=chosen.source,
        source_key=chosen.source_key,
    )
    if filled is None:
        raise SendError(f"the week of {plan.week} changed meanwhile; run `send` again to see it")
    return filled


def _store_new(session: Session, plan: WeekPlan, *, now: dt.datetime) -> tuple[Issue, bool]:
    chosen, composed, week = plan.chosen, plan.composed, plan.week
    assert chosen is not None and composed is not None
    try:
        with session.begin_nested():
            issue = store_issue(
                session,
                chosen.article,
                composed,
                send_week=week,
                now=now,
                source=chosen.source,
                source_key=chosen.source_key,
            )
            return issue, False
    except IntegrityError as exc:
        other = issue_for_week(session, week)  # another process stored the week first
        if other is None:
            raise
        if other.status in RECORDED_EMPTY:
            raise SendError(
                f"the week of {week} was just recorded as {other.status} by the daemon; "
                "nothing was sent (send it anyway with --force-week)"
            ) from exc
        return other, True


def _choose_article(src: str, settings: Settings, *, look: WeekLook, explicit: bool) -> WeekArticle:
    """A SOURCE file or feed as given; otherwise (or for a folder) the daemon's own choice."""
    start, end = week_window(look.week, settings)
    until = max(look.now, end)
    if not explicit or Path(src).is_dir():
        return resolve_week_article(
            src, send_week=look.week, since=start, until=until, sent_keys=look.sent_keys
        )
    article = load_article(src, week_start=start, week_end=until)
    return WeekArticle(article, src, source_key(src, article))


def _same_source(source: str, stored: str) -> bool:
    """Whether SOURCE names what the week's issue was made from (a rerun that continues it)."""
    if not stored:
        return False
    if source == stored:
        return True
    if is_url(source) or is_url(stored):
        return False
    given, made_from = Path(source).resolve(), Path(stored).resolve()
    return given == made_from or given in made_from.parents


def _not_used(issue_id: int, week: dt.date, source: str, *, todo: int | None) -> str:
    """Why SOURCE is refused: the week already has its issue (sent, or still being sent)."""
    head = f"issue #{issue_id} for the week of {week} exists; {source} is not used"
    if todo == 0:
        return (
            f"{head}: the week was already sent, and a sent week is never sent again "
            "(--force-week only sends a week recorded as skipped or missed)"
        )
    return f"{head}: run `send` without SOURCE to finish sending that issue"
