"""A live worker's heartbeat: a thread that renews its leases every ``lease_seconds / 3``.

A claimed row belongs to its worker until ``lease_expires_at``; a worker that dies (SIGKILL, a
lost host) stops renewing, so its rows are claimable again within one lease. While the worker
lives, the heartbeat keeps every row it holds ahead of the lease, however long a message or a
batch takes on the wire, so ``lease_seconds`` can be short (default 30 s) without a slow send
being taken over and sent twice.

The heartbeat knows only the lease owner's name, a sessionmaker, the settings and its own stop
event: it renews every ``sending`` row of ``owner`` (``store.outbox.extend_lease``) and nothing
else. :meth:`Heartbeat.close` sets the event and waits for a renewal in progress to end, so
nothing is renewed after it returns (call it before handing the rows back). A failed renewal
(the database restarting, a lock timeout) is logged and tried again at the next beat; it never
stops the worker. A process that dies takes the thread with it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer.clock import utcnow
from weekly_mailer.store import outbox

if TYPE_CHECKING:
    from types import TracebackType

    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings

log = logging.getLogger(__name__)

__all__ = ["Heartbeat"]


class Heartbeat:
    """Renews ``owner``'s leases every ``lease_seconds / 3`` until :meth:`close` (or ``stop``)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        owner: str,
        stop: threading.Event | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.lease_seconds = settings.lease_seconds
        self.interval = settings.lease_seconds / 3
        self.owner = owner
        self.stop = stop or threading.Event()
        self.clock = clock
        self.beats = 0  # renewals that committed
        self.failures = 0  # renewals that raised (logged)
        self._lock = threading.Lock()  # held while a renewal runs; close() waits for it
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat {owner}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop renewing; when this returns, no renewal is running and none will start."""
        self.stop.set()
        with self._lock:  # a renewal in progress finishes (or fails) before we return
            pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(1.0)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def beat(self) -> int:
        """Renew now: push back every lease ``owner`` holds; returns the rows renewed.

        Does nothing once stopped. Raises what the database raises (the loop logs it).
        """
        with self._lock:
            if self.stop.is_set():
                return 0
            with self.sessions.begin() as session:
                renewed = outbox.extend_lease(
                    session, owner=self.owner, now=self.clock(), lease_seconds=self.lease_seconds
                )
            self.beats += 1
            return renewed

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried, never fatal
                self.failures += 1
                log.warning(
                    "heartbeat of %s: could not renew its leases (%s: %s); trying again in %.1fs",
                    self.owner,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                    self.interval,
                )
