"""``bounces ingest``: bounce and complaint messages from stdin or a maildir."""

from __future__ import annotations

import mailbox
import sys
from pathlib import Path

import click

from weekly_mailer.cli._common import AppContext, pass_app
from weekly_mailer.errors import WeeklyMailerError
from weekly_mailer.subscribers.bounces import IngestSummary, apply_report, parse_report


@click.group()
def bounces() -> None:
    """Process bounce (DSN) and complaint (ARF) reports."""


@bounces.command()
@click.argument("maildir", required=False, type=click.Path(file_okay=False, path_type=Path))
@pass_app
def ingest(app: AppContext, maildir: Path | None) -> None:
    """Read one message from stdin, or every new message of MAILDIR.

    Hard bounces count towards bounce_limit; complaints stop mail at once; a message sent to
    unsubscribe_mailto (the mailto: in List-Unsubscribe) unsubscribes its sender. Point this
    at the mailbox that receives both, e.g. from cron. Processed maildir
    messages are moved to cur/ and marked seen, so running this again counts nothing twice.
    """
    summary = IngestSummary()
    limit = app.settings.bounce_limit
    mailto = app.settings.unsubscribe_mailto
    if maildir is None:
        data = sys.stdin.buffer.read()
        if not data.strip():
            raise WeeklyMailerError("bounces ingest: no message on standard input")
        with app.db.sessions.begin() as session:
            apply_report(
                session,
                parse_report(data, unsubscribe_address=mailto),
                bounce_limit=limit,
                summary=summary,
            )
    else:
        if not (maildir / "new").is_dir():
            raise WeeklyMailerError(f"bounces ingest: {maildir} is not a maildir (no new/ folder)")
        box = mailbox.Maildir(str(maildir), factory=None, create=False)
        for key in list(box.iterkeys()):
            msg = box.get_message(key)
            if msg.get_subdir() != "new":
                continue
            with app.db.sessions.begin() as session:
                apply_report(
                    session,
                    parse_report(box.get_bytes(key), unsubscribe_address=mailto),
                    bounce_limit=limit,
                    summary=summary,
                )
            msg.set_subdir("cur")
            msg.add_flag("S")
            box[key] = msg
    click.echo(
        f"{summary.messages} messages: {summary.hard_bounces} hard bounces "
        f"({summary.newly_bounced} subscribers now bounced), {summary.soft_bounces} temporary "
        f"failures ignored, {summary.complaints} complaints, "
        f"{summary.unsubscribes} unsubscribe requests, "
        f"{summary.unknown_recipients} unknown recipients, {summary.not_reports} not reports."
    )


def register(main: click.Group) -> None:
    main.add_command(bounces)
