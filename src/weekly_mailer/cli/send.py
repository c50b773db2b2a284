"""``send`` (compose + enqueue + deliver now) and ``worker`` (the delivery worker alone)."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

import click

from weekly_mailer.cli._common import AppContext, pass_app
from weekly_mailer.cli._delivery import (
    EarlyCrew,
    deliver_with_progress,
    say_outage,
    stop_on_signals,
    summary_table,
)
from weekly_mailer.cli._metrics import expose_metrics
from weekly_mailer.config_checks import POSTAL_ADDRESS_MISSING
from weekly_mailer.errors import SendError

if TYPE_CHECKING:  # `send` imports the services it calls when it runs (`worker` needs none)
    from weekly_mailer import issues
    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend
    from weekly_mailer.delivery.processes import Crew



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

    While the list-health guard holds the weekly send (an issue's complaint or hard-bounce rate
    passed complaint_rate_limit or bounce_rate_limit), a new issue is refused with one line
    and exit status 3; `weekly-mailer issues release` lets it go.
    """
    from weekly_mailer import issues, preflight
    from weekly_mailer.cli._preflight import preflight_send
    from weekly_mailer.delivery import resolve_backend
    from weekly_mailer.delivery.envelopes import Envelopes

    settings = app.settings
    backend = resolve_backend(settings)  # an unknown scheme fails before anything is claimed
    Envelopes.from_settings(settings)  # so does a DKIM key that cannot sign (ConfigError)
    refused = preflight_send(settings, dry_run=dry_run, yes=yes)  # the relay: before storing
    # The delivery processes start before the database is opened (forked, when that is safe)
    # or once the rows are counted, and get ready while the article is read and composed.
    with EarlyCrew(settings, backend, clock=app.clock, start=not dry_run) as early:
        if not dry_run:  # a dry run measures nothing (and leaves the port to a running send)
            expose_metrics(app, linger=True)
        db = app.db
        now = app.clock()
        with db.sessions.begin() as session:
            # The look runs the list-health guard; a held week is refused by plan_week (exit 3).
            look = issues.look_at_week(session, settings, now=now, force_week=force_week)
            look = preflight.held_look(session, look, refused, now=now)  # preflight = "refuse"
        crew = early.for_rows(0 if dry_run else look.todo)
        _send(app, look, source, dry_run=dry_run, yes=yes, allow_empty=allow_empty,
              backend=backend, crew=crew)  # fmt: skip


def _send(
    app: AppContext,
    look: issues.WeekLook,
    source: str | None,
    *,
    dry_run: bool,
    yes: bool,
    allow_empty: bool,
    backend: Backend,
    crew: Crew | None,
) -> None:
    from weekly_mailer import issues
    from weekly_mailer.store import outbox

    settings, db, now = app.settings, app.db, look.now
    plan = issues.plan_week(look, settings, source=source)  # reads the article, composes once
    week, n = plan.week, plan.todo
    if plan.existing is not None and plan.enqueued:
        if plan.already_sent:
            click.echo(
                f"Issue #{plan.existing.id} for the week of {week} was already sent: nothing new."
            )
            return
        click.echo(f"Issue #{plan.existing.id} for the week of {week}: {n} deliveries still to do.")
    elif n or allow_empty:  # an issue is about to be made: which week's, and what comes next
        click.echo(issues.week_note(week, now, settings))
    if dry_run:
        if not settings.postal_address:
            click.echo(f"Warning: {POSTAL_ADDRESS_MISSING}.", err=True)
        click.echo(f"Dry run: {plan.subject!r} (week of {week}) would go to {n} subscribers.")
        for email in plan.sample:
            click.echo(f"  {email}")
        if n > len(plan.sample):
            click.echo(f"  … and {n - len(plan.sample)} more")
        if plan.empty and not allow_empty:
            click.echo(f"{issues.NO_SUBSCRIBERS} (--allow-empty records the week anyway).")
        click.echo("Nothing was sent.")
        return
    if n:
        _postal_address(settings, yes=yes)
    if n and not yes:
        click.confirm(f"Send {plan.subject!r} to {n} subscribers now?", abort=True)
    with db.sessions.begin() as session:
        prepared = issues.prepare_week(session, plan, now=now, allow_empty=allow_empty)
        issue_id, subject = prepared.issue.id, prepared.issue.subject
    if prepared.queued is not None:
        click.echo(f"Issue #{issue_id} {subject!r}: queued for {prepared.queued} subscribers.")
    from weekly_mailer.delivery.run import fold_journals

    folded = fold_journals(db.sessions, settings)  # what a killed send had delivered: sent
    if folded:
        click.echo(f"{folded} messages a stopped process had delivered are recorded as sent.")
    with db.sessions.begin() as session:
        leased, until = outbox.leased_rows(session, issue_id, now=app.clock())
    if leased and until is not None:
        click.echo(
            f"waiting for {leased} rows leased by a stopped process until "
            f"{until:%H:%M:%S} UTC (or by a sender still running); they are sent after that."
        )
    stop = threading.Event()
    with backend, stop_on_signals(stop):
        stats = deliver_with_progress(
            db, settings, backend, issue_id, stop=stop, total=n,
            max_wait=max(60.0, settings.lease_seconds + 1), clock=app.clock, crew=crew,
        )  # fmt: skip
    with db.sessions.begin() as session:
        counts = issues.counts(session, issue_id)
        status = issues.get_issue(session, issue_id).status
        first = next((f for f in issues.failures(session, issue_id, limit=1)), None)
    summary_table(f"Issue #{issue_id} (week of {week}): {status}", counts, stats)
    if not counts["sent"] and stats.failed and not stop.is_set():
        error = " ".join((first.error or "").split()) if first is not None else ""
        reason = f" (first: {error})" if error else ""
        raise SendError(
            f"nothing could be sent: {stats.failed} deliveries failed{reason}; "
            f"see `weekly-mailer issues show {issue_id}`"
        )
    if stop.is_set():
        click.echo("Stopped: the messages in flight were finished; run `send` again to continue.")
    elif counts["deferred"]:
        click.echo(
            f"{counts['deferred']} deferred messages will be retried by `weekly-mailer worker` "
            "or `run` (or now: `weekly-mailer issues retry " + str(issue_id) + "`)."
        )


def _postal_address(settings: Settings, *, yes: bool) -> None:
    """Without ``postal_address``: at a terminal (and without --yes) ask before going on (the
    answer defaults to no); otherwise one warning line, and the send goes on as before."""
    if settings.postal_address:
        return
    click.echo(f"Warning: {POSTAL_ADDRESS_MISSING}.", err=True)
    if not yes and sys.stdin.isatty():
        click.confirm("Send without a postal address in the footer?", default=False, abort=True)


@click.command()
@click.option("--once", is_flag=True, help="Deliver what is due, then exit.")
@pass_app
def worker(app: AppContext, once: bool) -> None:
    """Run the delivery worker only: claim, send and record for every sending issue.

    It runs `processes` delivery processes (default: one per core), sharing `concurrency`
    connections. Several workers (on several hosts, with PostgreSQL) can run at once. SIGTERM
    or Ctrl-C stops claiming, finishes the messages in flight and hands the rest back.

    The relay's pace: at most daily_quota messages in any rolling 24 hours, and a warm-up of a
    new sending domain, warmup_start issue copies the first sending day and warmup_factor times
    more each sending day after, counted in the database across every process and worker; what
    waits goes later (`issues show` gives the expected finish).
    """
    from weekly_mailer.delivery import resolve_backend
    from weekly_mailer.delivery.processes import process_count
    from weekly_mailer.delivery.runner import Runner

    settings = app.settings
    backend = resolve_backend(settings)
    expose_metrics(app)
    db = app.db
    stop = threading.Event()
    n = process_count(settings, backend)
    if n > 1:
        backend.close()  # each delivery process opens its own

    def started(owners: list[str]) -> None:
        if n > 1:
            click.echo(f"Worker started: {n} delivery processes ({', '.join(owners)}).", err=True)
        else:
            click.echo(f"Worker {owners[0]} started.", err=True)

    runner = Runner(
        settings, db.sessions, backend, processes=n, stop=stop, on_start=started,
        on_outage=say_outage,
    )  # fmt: skip
    with backend, stop_on_signals(stop):
        s = runner.run(until_idle=once, forever=not once)
    click.echo(
        f"Worker stopped: {s.sent} sent, {s.deferred} deferred, {s.failed} failed, "
        f"{s.skipped} skipped.",
        err=True,
    )


def register(main: click.Group) -> None:
    main.add_command(send)
    main.add_command(worker)
