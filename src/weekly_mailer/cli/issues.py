"""``issues``: list the issues, show one (per-state counts, failures with SMTP replies), retry,
release a weekly send the list-health guard holds, and archive old delivery rows."""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import shutil
import threading
from typing import TYPE_CHECKING

import click

from weekly_mailer.cli._common import AppContext, pass_app
from weekly_mailer.cli._delivery import deliver_with_progress, stop_on_signals, summary_table
from weekly_mailer.cli.proofs import approve, proof_lines, veto
from weekly_mailer.errors import IssueError
from weekly_mailer.words import plural

if TYPE_CHECKING:  # each command imports the services it calls (not `--help`)
    from weekly_mailer.bounces.report import IssueRefusals
    from weekly_mailer.config import Settings
    from weekly_mailer.store.outbox.pacing import Forecast


class _Date(click.DateTime):
    """A ``YYYY-MM-DD`` date, shown and refused in those words (not strftime's ``%Y-%m-%d``)."""

    name = "date"

    def __init__(self) -> None:
        super().__init__(formats=["%Y-%m-%d"])

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "YYYY-MM-DD"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> dt.datetime:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"{value!r} is not a date as YYYY-MM-DD (e.g. 2026-06-01)", param, ctx)


_DATE = _Date()
STATES = ("queued", "sending", "sent", "deferred", "failed", "skipped")


@click.group()
def issues() -> None:
    """See what was sent to whom, resend what failed, release a held weekly send, approve or
    veto the next week's [Proof]."""


@issues.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """Every issue, newest first, with its per-state delivery counts; then whether the
    list-health guard holds the weekly send, and why; then each recent week's proof and its
    approval: waiting, approved (by whom, when) or vetoed (by whom, why)."""
    from weekly_mailer import issues as svc

    with app.db.sessions.begin() as session:
        svc.guard(session, app.settings, now=app.clock())  # an issue just finished holds now
        rows = svc.list_issues(session)
        holds = [(h.send_week, h.reason) for h in svc.active_holds(session)]
    proofed = proof_lines(app)
    if not rows:
        click.echo("No issues yet: `weekly-mailer send` composes and sends this week's.")
        for line in proofed:
            click.echo(line)
        return
    cells = [
        [str(issue.id), issue.send_week.isoformat(), issue.status,
         issue.subject or issue.reason or "", *(str(counts[s]) for s in STATES)]
        for issue, counts in rows
    ]  # fmt: skip
    for line in _columns(["id", "week", "status", "subject", *STATES], cells, subject=3):
        click.echo(line)
    for week, reason in holds:
        click.echo(
            f"HELD: the weekly send is held from the week of {week} on: {reason}. "
            f"Release it with `weekly-mailer issues release {week}`."
        )
    for line in proofed:
        click.echo(line)


def _columns(header: list[str], rows: list[list[str]], *, subject: int) -> list[str]:
    """Plain aligned columns, one space apart, that fit the terminal (80 columns in a pipe, or
    $COLUMNS): column ``subject`` is cut (with an ellipsis) to what the others leave. Text
    only: no box drawing, nothing a pipe or a script has to strip."""
    width = shutil.get_terminal_size((80, 24)).columns
    sizes = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    others = sum(sizes) - sizes[subject] + len(header) - 1
    sizes[subject] = max(len(header[subject]), min(sizes[subject], width - others))
    lines = []
    for row in [header, *rows]:
        out = []
        for i, (cell, size) in enumerate(zip(row, sizes, strict=True)):
            if len(cell) > size:
                cell = cell[: size - 1] + "…"
            numeric = i == 0 or i > subject
            out.append(cell.rjust(size) if numeric else cell.ljust(size))
        lines.append(" ".join(out).rstrip())
    return lines


@issues.command()
@click.argument("issue_id", type=int)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Show at most this many failed and deferred rows.",
)
@pass_app
def show(app: AppContext, issue_id: int, limit: int) -> None:
    """One issue: its state, per-state counts, and the failed/deferred rows with SMTP replies.

    Under a pace (daily_quota, the warm-up of warmup_start and warmup_factor) it also says how
    many rows wait and when the last of them should go.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from weekly_mailer import issues as svc
    from weekly_mailer.bounces.report import issue_refusals
    from weekly_mailer.issues.service import pace_forecast

    with app.db.sessions.begin() as session:
        issue = svc.get_issue(session, issue_id)
        counts = svc.counts(session, issue_id)
        failures = svc.failures(session, issue_id, limit=limit)
        refusals = issue_refusals(session, issue_id, now=app.clock())
        paced = pace_forecast(session, app.settings, issue_id, now=app.clock())
    click.echo(f"Issue #{issue.id}: {issue.subject or '(no subject)'}")
    click.echo(f"Week of {issue.send_week}  status {issue.status}")
    if issue.reason:
        click.echo(f"Reason: {issue.reason}")
    if issue.enqueued_at:
        click.echo(f"Enqueued {issue.enqueued_at:%Y-%m-%d %H:%M:%S} UTC")
    if issue.finished_at:
        click.echo(f"Finished {issue.finished_at:%Y-%m-%d %H:%M:%S} UTC")
    summary_table("Deliveries", counts)
    if paced is not None:
        _show_pace(paced, app.settings)
    _show_refusals(refusals)
    if failures:
        table = Table(title="Failed and deferred", title_justify="left")
        for col in ("address", "state", "tries", "reply", "next try (UTC)"):
            table.add_column(col)
        for f in failures:
            table.add_row(  # data, never markup: Text
                Text(f.email),
                f.status,
                str(f.attempts),
                Text(f.error or (str(f.code) if f.code else "")),
                f"{f.next_attempt_at:%Y-%m-%d %H:%M:%S}"
                if f.status == "deferred" and f.next_attempt_at
                else "",
            )
        Console(width=160).print(table)
        shown = counts["failed"] + counts["deferred"]
        if shown > len(failures):
            click.echo(f"… and {shown - len(failures)} more (--limit).")
        click.echo(f"Resend them with `weekly-mailer issues retry {issue.id}`.")


def _show_pace(paced: Forecast, settings: Settings) -> None:
    """The pace in force (daily_quota, warm-up) and when the waiting rows should have gone."""
    rules = []
    if settings.daily_quota:
        rules.append(f"daily_quota {settings.daily_quota:,}")
    if settings.warmup_start and paced.warmup_day is not None:
        rules.append(f"warm-up day {paced.warmup_day + 1}")
    click.echo(
        f"Pacing ({', '.join(rules) or 'warm-up over'}): {paced.waiting:,} waiting, "
        f"{paced.today:,} may go now; expected finish {paced.finish:%Y-%m-%d %H:%M} UTC"
    )


def _show_refusals(refusals: IssueRefusals) -> None:
    """The refusals by class (only hard ones count toward bounce_limit), the domains that
    blocked the issue, and the pauses in force for them."""
    shown = {k: n for k, n in refusals.by_kind.items() if n}
    if refusals.untrusted:
        click.echo(
            f"Untrusted reports: {refusals.untrusted} (tied to no message we sent the address "
            "they name: recorded, nobody changed, in no rate)"
        )
    if not shown:
        return
    click.echo("Bounces by class: " + ", ".join(f"{k} {n}" for k, n in shown.items()))
    for b in refusals.blocked:
        click.echo(f"blocked: {b.blocks} at {b.domain}: {b.reason}")
    for p in refusals.pauses:
        click.echo(p.line())


@issues.command()
@click.argument("issue_id", type=int)
@click.option("--no-send", is_flag=True, help="Only queue them; a worker or `run` sends them.")
@click.option(
    "--include-bounced",
    is_flag=True,
    help="Also retry the rows the server refused with a 5xx (bounces, policy refusals).",
)
@pass_app
def retry(app: AppContext, issue_id: int, no_send: bool, include_bounced: bool) -> None:
    """Queue the failed and deferred deliveries of an issue again, and send them now.

    Rows refused with a 5xx stay failed unless --include-bounced. Rows failed as stale (older
    than retry_give_up_hours) are sent anyway: this is the way to send a late issue.
    """
    from weekly_mailer import issues as svc
    from weekly_mailer.delivery import resolve_backend

    settings = app.settings
    backend = resolve_backend(settings)
    with app.db.sessions.begin() as session:
        retried = svc.retry(session, issue_id, now=app.clock(), include_refused=include_bounced)
    n, left = retried.queued, retried.refused_left
    click.echo(f"Queued {n} deliveries of issue #{issue_id} again.")
    if left:
        click.echo(
            f"{left} refused with a 5xx stay failed (--include-bounced retries them too; "
            "bounced subscribers are skipped either way)."
        )
    if no_send or not n:
        return
    stop = threading.Event()
    with backend, stop_on_signals(stop):
        stats = deliver_with_progress(
            app.db, settings, backend, issue_id, stop=stop, total=n, clock=app.clock
        )
    with app.db.sessions.begin() as session:
        counts = svc.counts(session, issue_id)
    summary_table(f"Issue #{issue_id}", counts, stats)


@issues.command("archive")
@click.option(
    "--before",
    required=True,
    type=_DATE,
    metavar="YYYY-MM-DD",
    help="Archive finished issues of send weeks before this date (YYYY-MM-DD).",
)
@click.option(
    "--to",
    "to",
    type=click.Path(dir_okay=False),
    default=None,
    help="Append the rows to this gzip-compressed JSON-lines file (FILE.jsonl.gz).",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be archived.")
@pass_app
def archive(app: AppContext, before: dt.datetime, to: str | None, dry_run: bool) -> None:
    """Move the delivery rows of old, finished issues out of the outbox table into a file.

    Each issue's per-state counts stay on the issue (`issues list` and `issues show` still show
    them); its rows are appended to --to as one JSON object a line (with the reader's address),
    one complete gzip member per issue written to disk before the transaction that deletes them
    commits. Issues still sending are never archived. The file is created readable by its owner
    only (0600). If the command is stopped, run it again: an issue not committed keeps its rows,
    an unfinished member at the end of the file is cut off, and the file reads whole (it may hold
    an issue's rows twice if the stop came between the write and the commit; the row id tells
    them apart).
    """
    from weekly_mailer import issues as svc
    from weekly_mailer.issues import retention
    from weekly_mailer.issues.archive_file import ArchiveFile

    if to is None and not dry_run:
        raise click.UsageError("give --to FILE.jsonl.gz to keep the rows (or --dry-run)")
    with app.db.sessions.begin() as session:
        todo = [i.id for i in retention.archivable(session, before=before.date())]
    if not todo:
        click.echo(f"No finished issue before {before:%Y-%m-%d} has delivery rows left.")
        return
    total = 0
    with contextlib.ExitStack() as stack:
        # one complete gzip member per issue, on disk before its rows leave the table
        kept = None if to is None or dry_run else stack.enter_context(ArchiveFile(to))
        for issue_id in todo:
            with app.db.sessions.begin() as session:
                issue = svc.get_issue(session, issue_id)
                with kept.member() if kept else contextlib.nullcontext() as out:
                    done = retention.archive_issue(
                        session, issue, out, now=app.clock(), dry_run=dry_run
                    )
            total += done.rows
            verb = "would archive" if dry_run else "archived"
            rows = plural(done.rows, "row", commas=True)
            click.echo(f"Issue #{issue_id} (week {done.send_week}): {verb} {rows}.")
    what = "Would archive" if dry_run else "Archived"
    where = f" to {to}" if to and not dry_run else ""
    rows = plural(total, "row", commas=True)
    click.echo(f"{what} {rows} of {plural(len(todo), 'issue')}{where}.")


@issues.command()
@click.argument(
    "week", required=False, metavar="[WEEK]", type=_DATE
)
@click.option(
    "--by",
    "by",
    default=None,
    metavar="NAME",
    help="Who releases it, recorded in the ledger (default: your login name).",
)
@pass_app
def release(app: AppContext, week: dt.datetime | None, by: str | None) -> None:
    """Release the weekly send the list-health guard holds (all holds, or WEEK's: YYYY-MM-DD).

    The guard holds the next weekly send when an issue's complaint rate passes
    complaint_rate_limit or its hard-bounce rate passes bounce_rate_limit (`issues list` and
    `doctor` say which issue, which rate and the figures). Look at the list first (see
    docs/operations.md); then release it. Who released it and when is kept in the ledger. The
    daemon then sends the week at its next check, within grace_hours of the send time (or send
    it now with `weekly-mailer send`). The same issue never holds the send again.
    """
    from weekly_mailer import issues as svc

    who = by or _login_name()
    held_week = week.date() if week is not None else None
    now = app.clock()
    with app.db.sessions.begin() as session:
        others = [h.send_week for h in svc.active_holds(session)]
        released = svc.release_holds(session, by=who, now=now, week=held_week)
        done = [(h.send_week, h.reason) for h in released]
    if not done:
        if held_week is not None and others:
            shown = ", ".join(str(w) for w in others)
            raise IssueError(f"nothing is held for the week of {held_week} (held: {shown})")
        click.echo("Nothing is held: the weekly send goes ahead as scheduled.")
        return
    for held_from, reason in done:
        click.echo(
            f"Released the hold from the week of {held_from} ({reason}), by {who} at "
            f"{now:%Y-%m-%d %H:%M:%S} UTC."
        )
    click.echo(
        "The daemon sends the week at its next check (within grace_hours of the send time); "
        "`weekly-mailer send` sends it now."
    )


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        return "unknown"


issues.add_command(approve)
issues.add_command(veto)


def register(main: click.Group) -> None:
    main.add_command(issues)
