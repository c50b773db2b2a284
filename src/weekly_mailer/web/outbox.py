"""``serve``'s confirmation e-mails: a delivery worker on the outbox, in one thread.

A sign-up commits its confirmation row and answers at once (the answer takes the same time
whether or not an e-mail goes out, so it tells nobody whether an address is subscribed). This
thread claims confirmation rows only, woken at once after such a commit and polling every second
for retries (deferred rows whose time has come) and for rows a crashed process left. A backend
that is down hands the rows back and is tried again a few seconds later; the rows stay in the
outbox meanwhile. ``close`` stops it: the message in flight is finished and recorded, every
other claimed row goes back to the queue (no row is left ``sending``).

Under ``run`` there is no such thread: the daemon's own worker delivers confirmations too, and the
app only wakes it (``create_app(..., deliver=False, on_queued=...)``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer.delivery.render import IssueRenderers
from weekly_mailer.delivery.worker import Worker
from weekly_mailer.errors import WeeklyMailerError
from weekly_mailer.store.models import DeliveryKind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend

log = logging.getLogger(__name__)


class ConfirmationThread:
    """A :class:`~weekly_mailer.delivery.worker.Worker` for confirmation rows, in a thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        backend: Backend,
        *,
        clock: Callable[[], dt.datetime],
        poll: float = 1.0,
        retry_pause: float = 5.0,
    ) -> None:
        self.backend = backend
        self.poll = poll
        self.retry_pause = retry_pause
        self.worker = Worker(
            sessions,
            settings,
            backend,
            IssueRenderers(sessions, settings, clock=clock),
            kind=DeliveryKind.CONFIRMATION.value,
            stop=threading.Event(),
            clock=clock,
        )
        self._thread = threading.Thread(target=self._loop, name="confirmations", daemon=True)

    def start(self) -> ConfirmationThread:
        self._thread.start()
        return self

    def wake(self) -> None:
        """A confirmation row was committed: look now."""
        self.worker.wake()

    def close(self, timeout: float = 30.0) -> None:
        """Stop claiming, finish and record the message in flight, hand the rest back, close
        the backend."""
        self.worker.stop.set()
        self.worker.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.backend.close()

    def _loop(self) -> None:
        while not self.worker.stop.is_set():
            try:
                self.worker.run(until_idle=False, poll=self.poll)
            except WeeklyMailerError as exc:
                log.warning("confirmation e-mails: %s; trying again shortly", exc)
                self.worker.pause(self.retry_pause)
            except Exception:  # noqa: BLE001 - the thread must outlive any one failure
                log.exception("confirmation e-mails: the worker crashed; trying again shortly")
                self.worker.pause(self.retry_pause)
