"""``serve``'s confirmation e-mails: the delivery runner (``delivery.runner.Runner``) on the
outbox's confirmation rows, in a thread of its own.

A sign-up commits its confirmation row and answers at once (the answer takes the same time
whether or not an e-mail goes out, so it tells nobody whether an address is subscribed). The
runner claims confirmation rows only, woken at once after such a commit and polling every
second for retries (deferred rows whose time has come) and for rows a crashed process left. A
backend or a database that is down is waited out by the runner; the rows stay in the outbox
meanwhile. ``close`` stops it: the message in flight is finished and recorded, every other
claimed row goes back to the queue (no row is left ``sending``).

Under ``run`` there is no such thread: the daemon's own runner delivers confirmations too, and
the app only wakes it (``create_app(..., deliver=False, on_queued=...)``).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer.delivery.runner import Runner
from weekly_mailer.store.models import DeliveryKind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend


class ConfirmationThread:
    """The runner for confirmation rows, in a thread (see the module)."""

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
        self.poll, self.retry_pause = poll, retry_pause
        self.runner = Runner(
            settings, sessions, backend, scope={"kind": DeliveryKind.CONFIRMATION.value},
            stop=threading.Event(), clock=clock,
        )  # fmt: skip

    def start(self) -> ConfirmationThread:
        self.runner.start(poll=self.poll, retry_pause=self.retry_pause)
        return self

    def wake(self) -> None:
        """A confirmation row was committed: look now."""
        self.runner.wake()

    def close(self, timeout: float = 30.0) -> None:
        """Stop claiming, finish and record the message in flight, hand the rest back, close
        the backend."""
        self.runner.close(timeout)
