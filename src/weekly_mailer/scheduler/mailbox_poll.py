"""``run``'s reader of the bounce mailbox: a thread that applies reports as they arrive.

Each round opens ``bounce_mailbox`` and reads it once (``bounces.mailbox.fetch``, exactly what
``bounces fetch`` does), then waits: with IMAP IDLE on the same connection, woken by new mail
(and reading again at least every ``bounce_poll_seconds``); else the connection is closed (POP3:
the deletions take effect) and the thread sleeps ``bounce_poll_seconds``. After reports, the
list-health guard looks at the issues they were about. A failure (the server down, a refused
login, the database away) is one line in the log, then a pause that doubles up to
``bounce_poll_seconds``; "reachable again" ends the outage. It never ends the daemon.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer.bounces.mailbox import Box, fetch, open_box
from weekly_mailer.clock import utcnow
from weekly_mailer.config_mailbox import parse_mailbox_url
from weekly_mailer.errors import WeeklyMailerError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings

log = logging.getLogger("weekly_mailer.daemon")
IDLE_LIMIT = 29 * 60.0  # RFC 2177: re-issue IDLE at least every 29 minutes
FIRST_PAUSE = 5.0


class MailboxPoller:
    """The thread; ``start()`` and ``close()`` (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.settings, self.sessions, self.clock = settings, sessions, clock
        self.name = parse_mailbox_url(settings.bounce_mailbox).key
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bounce-mailbox", daemon=True)
        self._failing = ""

    def start(self) -> None:
        log.info("bounce mailbox %s: reading it for reports", self.name)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the message being applied; a wait in IDLE ends within a second."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        poll = self.settings.bounce_poll_seconds
        pause = FIRST_PAUSE
        box: Box | None = None
        while not self._stop.is_set():
            try:
                if box is None:
                    box = open_box(self.settings)
                self._read(box)
                if self._failing:
                    log.info("bounce mailbox %s: reachable again", self.name)
                    self._failing, pause = "", FIRST_PAUSE
                if box.wait(min(poll, IDLE_LIMIT), self._stop) is None:
                    box.close()
                    box = None
                    self._stop.wait(poll)
            except Exception as exc:  # noqa: BLE001 - the mailbox's trouble never ends the daemon
                if box is not None:
                    box.close()
                    box = None
                text = str(exc) if isinstance(exc, WeeklyMailerError) else repr(exc)
                if not text.startswith(("bounce mailbox", "bounce_mailbox")):
                    text = f"bounce mailbox: {text}"
                if text != self._failing:
                    log.error("%s; trying again in %g s", text, pause)
                    if not isinstance(exc, WeeklyMailerError):
                        log.debug("bounce mailbox: the error", exc_info=exc)
                self._failing = text
                self._stop.wait(pause)
                pause = min(pause * 2, max(poll, FIRST_PAUSE))
        if box is not None:
            box.close()

    def _read(self, box: Box) -> None:
        from weekly_mailer import issues

        result = fetch(box, self.sessions, self.settings, stop=self._stop, clock=self.clock)
        if not result.reports and not result.finished:
            return
        log.info("%s", result.line())
        if result.ingest.issue_ids:
            with self.sessions.begin() as session:
                for hold in issues.guard(
                    session, self.settings, now=self.clock(), issue_ids=result.ingest.issue_ids
                ):
                    log.warning(
                        "list health: %s: the weekly send is held from the week of %s on",
                        hold.reason, hold.send_week,
                    )  # fmt: skip
