"""Reports from a bounce mailbox (``bounce_mailbox``): read once, each report applied once.

:func:`open_box` connects (:mod:`.mailbox_imap`, :mod:`.mailbox_pop`); :func:`fetch` reads
every message not read before and applies it through ``intake.apply_report``, like ``bounces
ingest``. Progress is the ``mailbox_message`` table: one row per message read, keyed by the
mailbox's URL without the password and the message's ``UIDVALIDITY:UID`` (IMAP) or UIDL
(POP3), written in the transaction that applies the report. So a process killed at any point
applies each report exactly once: a report committed but not yet moved is moved by the next
run, one not committed is read again. Two readers at once (``run`` and a ``bounces fetch``)
race on that row's primary key, and the loser changes nothing.

Only reports are touched on the server: moved to ``bounce_processed_folder`` (IMAP) or deleted
(POP3). Mail that is not a report (a person's, an auto-reply) is recorded as ``other`` and
never read again, moved, deleted or marked read. A changed UIDVALIDITY makes every message
new again; a report then re-read is still applied once (``bounce_event`` remembers its
Message-ID), but moved again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from weekly_mailer.bounces.intake import IngestSummary, Report, apply_report, verp_reader
from weekly_mailer.bounces.mailbox_box import Box
from weekly_mailer.bounces.mailbox_imap import ImapBox
from weekly_mailer.bounces.mailbox_pop import PopBox
from weekly_mailer.bounces.report_reader import parse_report
from weekly_mailer.clock import utcnow
from weekly_mailer.config_mailbox import parse_mailbox_url
from weekly_mailer.errors import ConfigError
from weekly_mailer.store.bounce_models import MailboxMessage
from weekly_mailer.words import plural

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

log = logging.getLogger(__name__)
__all__ = ["Box", "FetchSummary", "OnMessage", "fetch", "open_box"]

# (number, report, what tied it, whether it was a report) for each message read
OnMessage = Callable[[int, Report, str, bool], None]
DONE_BATCH = 25  # reports moved or deleted at a time


@dataclasses.dataclass
class FetchSummary:
    """What one read of the mailbox did."""

    mailbox: str
    folder: str = ""  # where reports went ("" for POP3: deleted)
    ingest: IngestSummary = dataclasses.field(default_factory=IngestSummary)
    reports: int = 0  # reports read and applied now
    other: int = 0  # not reports, read now and left where they were
    left: int = 0  # every message left in place (read now or before)
    finished: int = 0  # reports moved (IMAP) or deleted (POP3), this time's and earlier ones'
    raced: int = 0  # read by another reader at the same moment: nothing done here

    def line(self) -> str:
        """The mailbox's summary line."""
        where = f"moved to {self.folder}" if self.folder else "deleted"
        raced = f", {self.raced} read by another reader at once" if self.raced else ""
        return (
            f"Mailbox {self.mailbox}: {plural(self.reports, 'report')} applied "
            f"({self.ingest.untrusted} untrusted), {self.finished} {where}; "
            f"{plural(self.left, 'other message')} left unread where "
            f"{'they were' if self.left != 1 else 'it was'} ({self.other} new{raced})."
        )


def open_box(settings: Settings) -> Box:
    """A connection to ``bounce_mailbox``; ``ConfigError`` when none is set, ``MailboxError``
    when it cannot be reached, logged in to or opened."""
    if not settings.bounce_mailbox:
        raise ConfigError("bounce_mailbox: not set (imaps://user:password@host/FOLDER, pop3s://…)")
    url = parse_mailbox_url(settings.bounce_mailbox)
    if url.imap:
        return ImapBox(url, settings.bounce_processed_folder)
    return PopBox(url)


def fetch(
    box: Box,
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    dry_run: bool = False,
    on_message: OnMessage | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> FetchSummary:
    """Read every message of ``box`` not read before; apply each report in its own
    transaction with its ``mailbox_message`` row; move or delete the reports. ``dry_run``
    reads and classifies, changes nothing (here or on the server)."""
    summary = FetchSummary(
        mailbox=box.key,
        folder=settings.bounce_processed_folder if box.key.startswith("imap") else "",
    )
    query = select(MailboxMessage.message_key, MailboxMessage.outcome).where(
        MailboxMessage.mailbox == box.key
    )
    with sessions() as session:
        known = {key: outcome for key, outcome in session.execute(query).tuples()}
    keys = box.keys()
    summary.left = sum(known.get(k) == "other" for k in keys)
    leftover = [k for k in keys if known.get(k) == "report"]  # recorded, not yet moved
    if leftover and not dry_run:
        _finish(box, leftover, summary)
    fresh = [k for k in keys if k not in known]
    apply = _Applier(settings, summary.ingest, clock)
    pending: list[str] = []
    dry_session = sessions() if dry_run else None
    try:
        for number, (key, data) in enumerate(box.read(fresh), start=1):
            if stop is not None and stop.is_set():
                break
            report = _read(box, key, data, settings.unsubscribe_mailto)
            if dry_session is not None:
                note, is_report = apply(dry_session, report)
            else:
                try:
                    with sessions.begin() as session:
                        row = MailboxMessage(mailbox=box.key, message_key=key, outcome="other")
                        session.add(row)
                        session.flush()  # another reader's row: IntegrityError, before applying
                        note, is_report = apply(session, report)
                        row.outcome = "report" if is_report else "other"
                except IntegrityError:
                    summary.raced += 1
                    continue
            if is_report:
                summary.reports += 1
                pending.append(key)
            else:
                summary.other += 1
                summary.left += 1
            if on_message is not None:
                on_message(number, report, note, is_report)
            if len(pending) >= DONE_BATCH and not dry_run:
                _finish(box, pending, summary)
                pending = []
    finally:
        if dry_session is not None:
            dry_session.rollback()
            dry_session.close()
    if pending and not dry_run:
        _finish(box, pending, summary)
    return summary


def _read(box: Box, key: str, data: bytes, mailto: str) -> Report:
    """The report a message is; one the reader cannot make sense of is left where it is, like
    a person's mail, and said so (it must not stop the mailbox's progress)."""
    try:
        return parse_report(data, unsubscribe_address=mailto)
    except Exception as exc:  # noqa: BLE001 - one unreadable message must not stop the rest
        log.warning(
            "bounce mailbox %s: message %s cannot be read (%s): left where it is",
            box.key, key, exc,
        )  # fmt: skip
        return Report(kind="other")


def _finish(box: Box, keys: list[str], summary: FetchSummary) -> None:
    box.done(keys)
    summary.finished += len(keys)


class _Applier:
    """``apply_report`` with the settings' arguments; says whether the message was a report
    (``apply_report`` counts what is not as ``not_reports``)."""

    def __init__(
        self, settings: Settings, ingest: IngestSummary, clock: Callable[[], dt.datetime]
    ) -> None:
        self.settings, self.ingest, self.clock = settings, ingest, clock
        self.verp = verp_reader(settings)

    def __call__(self, session: Session, report: Report) -> tuple[str, bool]:
        before = self.ingest.not_reports
        s = self.settings
        note = apply_report(
            session, report, bounce_limit=s.bounce_limit, summary=self.ingest, now=self.clock(),
            secret_key=s.secret_key, verp=self.verp, trust=s.bounce_trust,
        )  # fmt: skip
        return note, self.ingest.not_reports == before
