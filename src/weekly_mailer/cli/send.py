"""``send`` (compose + enqueue + deliver now) and ``worker`` (the delivery worker alone)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy.exc import IntegrityError

from weekly_mailer import issues
from weekly_mailer.articles.feed import is_url
from weekly_mailer.cli._common import AppContext, pass_app
from weekly_mailer.cli._delivery import SendProgress, stop_on_signals, summary_table
from weekly_mailer.clock import utcnow
from weekly_mailer.errors import SendError
from weekly_mailer.issues.ledger import sent_source_keys
from weekly_mailer.issues.weeks import send_week_for
from weekly_mailer.store import outbox

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.compose import ComposedIssue
    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend
    from weekly_mailer.delivery.worker import Stats
    from weekly_mailer.issues.sources import WeekArticle
    from weekly_mailer.store.db import Database
    from weekly_mailer.store.models import Issue

log = logging.getLogger("weekly_mailer.send")




def deliver_issue(
    db: Database,
    settings: Settings,
    backend: Backend,
    issue_id: int,
    *,
    stop: threading.Event,
    total: int,
    max_wait: float = 60.0,
) -> Stats:
    """Run the worker on one issue with a progress bar until nothing is due within max_wait."""
    from weekly_mailer.delivery.render import IssueRenderers
    from weekly_mailer.delivery.worker import Worker

    with SendProgress(total) as progress:
        worker = Worker(
            db.sessions,
            settings,
            backend,
            IssueRenderers(db.sessions, settings),
            issue_id=issue_id,
            stop=stop,
            on_progress=progress.update,
        )
        return worker.run(until_idle=True, max_wait=max_wait)


@click.command()
@click.argument("source", required=False)
@click.option("--dry-run", is_flag=True, help="Show how many and who would get it; send nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Store the issue and close the week even with no active subscribers (normally refused).",
)
@click.option(
    "--force-week",
    is_flag=True,
    help="Send a week the daemon recorded as skipped or missed: its row becomes the real issue. "
    "A week that was sent is never sent again.",
)
@pass_app
def send(
    app: AppContext,
    source: str | None,
    dry_run: bool,
    yes: bool,
    allow_empty: bool,
    force_week: bool,
) -> None:
    """Compose this week's issue from SOURCE (default: article_source), enqueue it, deliver now.

    Without SOURCE the week's article is chosen exactly as the daemon chooses it (a feed's new
    item, a folder's file for the week, a file not sent yet). Running it again for the same week
    sends nothing new: it only finishes what is still queued. SIGTERM or Ctrl-C stops cleanly
    (the messages in flight are finished and recorded); run it again to continue.
    """
    from weekly_mailer.delivery import resolve_backend

    settings = app.settings
    backend = resolve_backend(settings)  # an unknown scheme fails before anything is claimed
    db = app.db
    now = utcnow()
    week = send_week_for(now, settings)
    recorded: int | None = None  # a skipped or missed row that --force-week fills
    with db.sessions.begin() as session:
        issue = issues.issue_for_week(session, week)
        if issue is not None and issue.status in issues.RECORDED_EMPTY:
            if not force_week:
                raise SendError(
                    f"the week of {week} is recorded as {issue.status}"
                    + (f" ({issue.reason})" if issue.reason else "")
                    + "; nothing was sent (send it anyway with --force-week)"
                )
            recorded, issue = issue.id, None
        existing = None if issue is None else (issue.id, issue.subject, issue.enqueued_at)
        existing_source = "" if issue is None else issue.source
        sent_keys = set() if issue is not None else sent_source_keys(session)
    chosen = composed = None
    if existing is None:
        chosen = _choose_article(source, settings, week=week, now=now, sent_keys=sent_keys)
        composed = issues.compose(chosen.article, settings, send_week=week)
        subject = composed.subject
    else:
        subject = existing[1]
    with db.sessions.begin() as session:
        if existing is None or existing[2] is None:
            n, sample = issues.active_count(session), issues.active_sample(session)
        else:
            c = issues.counts(session, existing[0])
            n = c["queued"] + c["deferred"] + c["sending"]
            sample = issues.open_sample(session, existing[0])
    enqueued = existing is not None and existing[2] is not None
    if existing is not None and source and not _same_source(source, existing_source):
        raise SendError(_not_used(existing[0], week, source, todo=n if enqueued else None))
    if enqueued:
        assert existing is not None
        if not n:
            click.echo(
                f"Issue #{existing[0]} for the week of {week} was already sent: nothing new."
            )
            return
        click.echo(f"Issue #{existing[0]} for the week of {week}: {n} deliveries still to do.")
    if dry_run:
        click.echo(f"Dry run: {subject!r} (week of {week}) would go to {n} subscribers.")
        for email in sample:
            click.echo(f"  {email}")
        if n > len(sample):
            click.echo(f"  … and {n - len(sample)} more")
        if not n and not enqueued and not allow_empty:
            click.echo(f"{NO_SUBSCRIBERS} (--allow-empty records the week anyway).")
        click.echo("Nothing was sent.")
        return
    if not n and not enqueued and not allow_empty:
        raise SendError(NO_SUBSCRIBERS)
    if n and not yes:
        click.confirm(f"Send {subject!r} to {n} subscribers now?", abort=True)
    with db.sessions.begin() as session:
        issue = _store(session, existing, recorded, chosen, composed, week=week, now=now)
        if issue.enqueued_at is None:
            added = issues.enqueue(session, issue, now=now)
            click.echo(f"Issue #{issue.id} {issue.subject!r}: queued for {added} subscribers.")
        issue_id = issue.id
    with db.sessions.begin() as session:
        leased, until = outbox.leased_rows(session, issue_id, now=utcnow())
    if leased and until is not None:
        click.echo(
            f"waiting for {leased} rows leased by a stopped process until "
            f"{until:%H:%M:%S} UTC (or by a sender still running); they are sent after that."
        )
    stop = threading.Event()
    with backend, stop_on_signals(stop):
        stats = deliver_issue(
            db, settings, backend, issue_id, stop=stop, total=n,
            max_wait=max(60.0, settings.lease_seconds + 1),
        )  # fmt: skip
    with db.sessions.begin() as session:
        counts = issues.counts(session, issue_id)
        status = issues.get_issue(session, issue_id).status
    summary_table(f"Issue #{issue_id} (week of {week}): {status}", counts, stats)
    if stop.is_set():
        click.echo("Stopped: the messages in flight were finished; run `send` again to continue.")
    elif counts["deferred"]:
        click.echo(
            f"{counts['deferred']} deferred messages will be retried by `weekly-mailer worker` "
            "or `run` (or now: `weekly-mailer issues retry " + str(issue_id) + "`)."
        )


NO_SUBSCRIBERS = "no active subscribers: nothing to send; the week stays open"


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


def _choose_article(
    source: str | None,
    settings: Settings,
    *,
    week: dt.date,
    now: dt.datetime,
    sent_keys: set[str],
) -> WeekArticle:
    """The week's article: SOURCE as given, else (or for a folder) the daemon's own choice."""
    from weekly_mailer.articles import load_article
    from weekly_mailer.issues.sources import WeekArticle, resolve_week_article

    src = source or settings.article_source
    if not src:
        raise SendError("no article: pass SOURCE or set article_source in the config")
    start, end = issues.week_window(week, settings)
    if source is None or Path(src).is_dir():
        return resolve_week_article(
            src, send_week=week, since=start, until=max(now, end), sent_keys=sent_keys
        )
    article = load_article(src, week_start=start, week_end=max(now, end))
    return WeekArticle(article, src, issues.source_key(src, article))


def _store(
    session: Session,
    existing: tuple[int, str, dt.datetime | None] | None,
    recorded: int | None,
    chosen: WeekArticle | None,
    composed: ComposedIssue | None,
    *,
    week: dt.date,
    now: dt.datetime,
) -> Issue:
    """The week's issue row: the one that exists, a skipped/missed one filled, or a new one."""
    if existing is not None:
        return issues.get_issue(session, existing[0])
    assert chosen is not None and composed is not None
    article, src, key = chosen.article, chosen.source, chosen.source_key
    if recorded is not None:
        filled = issues.fill_recorded_week(
            session, recorded, article, composed, now=now, source=src, source_key=key
        )
        if filled is None:
            raise SendError(f"the week of {week} changed meanwhile; run `send` again to see it")
        return filled
    try:
        with session.begin_nested():
            return issues.store_issue(
                session, article, composed, send_week=week, now=now, source=src, source_key=key
            )
    except IntegrityError as exc:
        issue = issues.issue_for_week(session, week)  # another process stored it first
        assert issue is not None
        if issue.status in issues.RECORDED_EMPTY:
            raise SendError(
                f"the week of {week} was just recorded as {issue.status} by the daemon; "
                "nothing was sent (send it anyway with --force-week)"
            ) from exc
        return issue


@click.command()
@click.option("--once", is_flag=True, help="Deliver what is due, then exit.")
@pass_app
def worker(app: AppContext, once: bool) -> None:
    """Run the delivery worker only: claim, send and record for every sending issue.

    Several workers (on several hosts, with PostgreSQL) can run at once. SIGTERM stops
    claiming, finishes the messages in flight and hands the rest back.
    """
    from weekly_mailer.delivery import resolve_backend
    from weekly_mailer.delivery.backends.base import BackendUnavailableError
    from weekly_mailer.delivery.render import IssueRenderers
    from weekly_mailer.delivery.worker import Worker

    settings = app.settings
    backend = resolve_backend(settings)
    db = app.db
    stop = threading.Event()
    w = Worker(db.sessions, settings, backend, IssueRenderers(db.sessions, settings), stop=stop)
    click.echo(f"Worker {w.owner} started.", err=True)
    with backend, stop_on_signals(stop):
        while not stop.is_set():
            try:
                w.run(until_idle=once)
            except BackendUnavailableError as exc:
                if once:
                    raise
                log.error("%s; trying again in %.0fs", exc, settings.throttle_pause_seconds)
                stop.wait(settings.throttle_pause_seconds)
                continue
            if once:
                break
    s = w.stats
    click.echo(
        f"Worker stopped: {s.sent} sent, {s.deferred} deferred, {s.failed} failed, "
        f"{s.skipped} skipped.",
        err=True,
    )


def register(main: click.Group) -> None:
    main.add_command(send)
    main.add_command(worker)
