"""``bounces ingest`` (stdin, a message file, a maildir or an mbox file) and ``bounces fetch``
(``bounce_mailbox``: IMAP or POP3): bounce and complaint messages applied to the readers they
are about."""

from __future__ import annotations

import datetime as dt
import mailbox
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from weekly_mailer.cli._common import AppContext, pass_app
from weekly_mailer.clock import utcnow
from weekly_mailer.errors import WeeklyMailerError

if TYPE_CHECKING:  # the parser is imported by the commands that read reports, not by `--help`
    from weekly_mailer.bounces.intake import Report


@click.group()
def bounces() -> None:
    """Process bounce (DSN and MTA text), complaint (ARF) and auto-reply messages."""


@bounces.command()
@click.argument("source", required=False, type=click.Path(path_type=Path))
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print what each message is (kind, recipients, status, reason); change nothing.",
)
@pass_app
def ingest(app: AppContext, source: Path | None, *, dry_run: bool) -> None:
    """Read one message from stdin (no SOURCE, or -), one message file (a saved .eml),
    every new message of a maildir, or every message of an mbox file (SOURCE).

    \b
    Each failure is classified:
      hard     no such mailbox or domain: counts toward bounce_limit
      soft     mailbox full, temporary: recorded, subscriber untouched
      block    spam, policy, reputation, SPF/DKIM/DMARC, rate limit: the
               sender's problem; recorded with the domain, subscriber untouched
      expired  the sending MTA gave up retrying: recorded only
      unknown  nothing to go on: recorded only
    Complaints (ARF abuse, fraud, virus) stop mail at once; ARF opt-out
    unsubscribes; other feedback is recorded; auto-replies change nothing. A
    message sent to unsubscribe_mailto (the mailto: in List-Unsubscribe)
    unsubscribes its sender. A report delivered to a VERP address (the
    envelope sender of each message when bounce_address is set) is about that
    delivery and its subscriber, whatever address its text names. A report
    quoting one of our Message-IDs is about the subscriber that id names (and
    only them). Any other report (a forged or unknown VERP address, no VERP and
    none of our Message-IDs) is recorded as untrusted and changes nobody,
    unless bounce_trust = "any".

    Point this at the mailbox that receives them, e.g. from cron. Processed maildir messages are
    moved to cur/ and marked seen; an mbox file is read, not changed, and a report whose
    Message-ID was already recorded is skipped, so running this again counts nothing twice
    (a message file, likewise).
    With --dry-run, one line per message (its number, Message-ID or Subject, kind, recipients,
    status code and reason) and the summary of what would happen; nothing is changed.
    """
    from weekly_mailer import issues
    from weekly_mailer.bounces.intake import (
        IngestSummary,
        apply_report,
        parse_report,
        verp_reader,
    )

    summary = IngestSummary()
    settings = app.settings
    mailto, limit, key = settings.unsubscribe_mailto, settings.bounce_limit, settings.secret_key
    verp = verp_reader(settings)
    held: list[tuple[dt.date, str]] = []  # holds the list-health guard placed
    if dry_run:
        with app.db.sessions() as session:  # never committed: closing it rolls everything back
            for number, data, _done in _messages(source, keep=True):
                report = parse_report(data, unsubscribe_address=mailto)
                note = apply_report(
                    session, report, bounce_limit=limit, summary=summary, now=utcnow(),
                    secret_key=key, verp=verp, trust=settings.bounce_trust,
                )  # fmt: skip
                click.echo(describe(number, report) + (f" [{note}]" if note else ""))
            session.rollback()
    else:
        for _number, data, done in _messages(source, keep=False):
            with app.db.sessions.begin() as session:
                report = parse_report(data, unsubscribe_address=mailto)
                apply_report(
                    session, report, bounce_limit=limit, summary=summary, now=utcnow(),
                    secret_key=key, verp=verp, trust=settings.bounce_trust,
                )  # fmt: skip
            done()
        with app.db.sessions.begin() as session:  # the list-health guard, on the issues named
            holds = issues.guard(session, settings, now=utcnow(), issue_ids=summary.issue_ids)
            held = [(h.send_week, h.reason) for h in holds]
    click.echo(("Dry run, nothing changed. " if dry_run else "") + summary.line())
    click.echo(summary.kinds_line())
    if summary.verp_line():
        click.echo(summary.verp_line())
    if summary.trust_line():
        click.echo(summary.trust_line())
    _held_lines(held)


@bounces.command()
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read and classify every new message; apply nothing, move or delete nothing.",
)
@pass_app
def fetch(app: AppContext, *, dry_run: bool) -> None:
    """Read the bounce mailbox (bounce_mailbox) once and apply every new report.

    \b
    bounce_mailbox = "imaps://user:password@host[:port]/FOLDER"   (993)
                     "imap://…"    STARTTLS required               (143)
                     "pop3s://user:password@host[:port]"           (995)
                     "pop3://…"    STLS required                   (110)
    User, password and folder may be URL-encoded (%40 for @); ?cafile=PATH
    trusts a CA besides the system's.

    Each report is classified and applied as `bounces ingest` does (one line
    each), then moved to bounce_processed_folder (default Processed, created
    when missing; POP3: deleted). Mail that is not a report is never moved,
    deleted or marked read. Progress is kept by UIDVALIDITY and UID (POP3:
    UIDL) in the database, in the transaction that applies each report, so
    a run killed at any point and run again applies each report once. `run`
    polls the same mailbox (IMAP IDLE where offered, else every
    bounce_poll_seconds). With --dry-run, one line per new message and the
    summary of what would happen; nothing changes.
    """
    from weekly_mailer import issues
    from weekly_mailer.bounces.mailbox import fetch as fetch_once
    from weekly_mailer.bounces.mailbox import open_box

    settings = app.settings

    def show(number: int, report: Report, note: str, is_report: bool) -> None:
        if is_report or dry_run:
            click.echo(describe(number, report) + (f" [{note}]" if note else ""))

    box = open_box(settings)
    try:
        result = fetch_once(box, app.db.sessions, settings, dry_run=dry_run, on_message=show)
    finally:
        box.close()
    held: list[tuple[dt.date, str]] = []
    if not dry_run and result.ingest.issue_ids:
        with app.db.sessions.begin() as session:  # the list-health guard, on the issues named
            found = issues.guard(session, settings, now=utcnow(), issue_ids=result.ingest.issue_ids)
            held = [(h.send_week, h.reason) for h in found]
    summary = result.ingest
    click.echo(("Dry run, nothing changed. " if dry_run else "") + result.line())
    click.echo(summary.line())
    click.echo(summary.kinds_line())
    for extra in (summary.verp_line(), summary.trust_line()):
        if extra:
            click.echo(extra)
    _held_lines(held)


def _held_lines(held: list[tuple[dt.date, str]]) -> None:
    for week, reason in held:
        click.echo(
            f"List health: {reason}: the weekly send is held from the week of {week} on "
            f"(`weekly-mailer issues release {week}` lets it go)."
        )


_Done = Callable[[], None]  # marks one message processed


def _messages(source: Path | None, *, keep: bool) -> Iterator[tuple[int, bytes, _Done]]:
    """(number, bytes, mark-as-processed) for each message to read."""
    if source is None or str(source) == "-":
        data = sys.stdin.buffer.read()
        if not data.strip():
            raise WeeklyMailerError("bounces ingest: no message on standard input")
        yield 1, data, _nothing
    elif source.is_dir():
        if not (source / "new").is_dir():
            raise WeeklyMailerError(f"bounces ingest: {source} is not a maildir (no new/ folder)")
        box = mailbox.Maildir(str(source), factory=None, create=False)
        number = 0
        for key in sorted(box.iterkeys()):
            msg = box.get_message(key)
            if msg.get_subdir() != "new":
                continue
            number += 1
            yield number, box.get_bytes(key), _Seen(box, key, msg) if not keep else _nothing
    elif source.is_file():
        yield from _file(source)
    else:
        raise WeeklyMailerError(
            f"bounces ingest: {source} is neither a maildir nor an mbox file (no such file)"
        )


# A message's first line: a header field ("Return-Path: <>", "Received: from …").
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")


def _file(path: Path) -> Iterator[tuple[int, bytes, _Done]]:
    """The messages of an mbox file, or the one message of a message file."""
    with path.open("rb") as fh:
        head = fh.read(1000)
    if not head or head.startswith(b"From "):
        yield from _mbox(path)
    elif _HEADER_LINE.match(head):
        yield 1, path.read_bytes(), _nothing
    else:
        raise WeeklyMailerError(
            f"bounces ingest: {path} is neither an mbox file (it does not start with 'From ') "
            "nor a message (it does not start with a header field)"
        )


def _mbox(path: Path) -> Iterator[tuple[int, bytes, _Done]]:
    box = mailbox.mbox(str(path), create=False)
    try:
        for number, key in enumerate(box.iterkeys(), start=1):
            yield number, box.get_bytes(key, from_=False), _nothing
    finally:
        box.close()


def _nothing() -> None:
    pass


class _Seen:
    """Move a processed maildir message to cur/ and mark it seen."""

    def __init__(self, box: mailbox.Maildir, key: str, msg: mailbox.MaildirMessage) -> None:
        self.box, self.key, self.msg = box, key, msg

    def __call__(self) -> None:
        self.msg.set_subdir("cur")
        self.msg.add_flag("S")
        self.box[self.key] = self.msg


def describe(number: int, report: Report) -> str:
    """One line for --dry-run: which message, and what it says about whom."""
    which = report.message_id or (f'"{report.subject}"' if report.subject else "(no Message-ID)")
    if report.kind == "unsubscribe":
        return f"{number} {which}: unsubscribe request from {', '.join(report.unsubscribed)}"
    if not report.findings:
        label = "auto-reply" if report.kind == "auto-reply" else "not a report"
        return f"{number} {which}: {label}"
    parts = []
    for f in report.findings:
        code = f" ({f.code})" if f.code is not None else ""
        reason = f": {f.reason}" if f.reason else ""
        parts.append(f"{f.kind.value} {f.recipient} {f.status or '-'}{code}{reason}")
    return f"{number} {which}: " + "; ".join(parts)


def register(main: click.Group) -> None:
    main.add_command(bounces)
