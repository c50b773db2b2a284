"""A live worker's heartbeat: a thread that renews its leases every ``lease_seconds / 3``.

A claimed row belongs to its worker until ``lease_expires_at``; a worker that dies (SIGKILL, a
lost host) stops renewing, so its rows are claimable again within one lease. While the worker
lives, the heartbeat keeps every row it holds ahead of the lease, however long a message or a
batch takes on the wire, so ``lease_seconds`` can be short (default 30 s) without a slow send
being taken over and sent twice.

Leases are renewed here and nowhere else. A renewal (``Outbox.extend``) returns the rows the
database still shows under this worker, with their claim's token; the fence (``leases.Leases``)
moves on the moment until which each of those may be sent, and only those: a row another
worker took while this one was paused is not among them, so it is never sent from here. The
worker asks for a renewal itself (``beat``) before a chunk whose leases are about to run out.

:meth:`Heartbeat.close` sets the event and waits for a renewal in progress to end, so nothing
is renewed after it returns (call it before handing the rows back). A failed renewal (the
database restarting, a lock timeout) is logged at DEBUG and tried again at the next beat; the
fence stops the sending meanwhile if it lasts, and the runner reports the outage. A process
that dies takes the thread with it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable
    from types import TracebackType

    from weekly_mailer.delivery.leases import Leases
    from weekly_mailer.delivery.ports import Outbox

log = logging.getLogger(__name__)

__all__ = ["Heartbeat"]


class Heartbeat:
    """Renews the outbox's leases every ``lease_seconds / 3`` until :meth:`close`."""

    def __init__(
        self,
        outbox: Outbox,
        leases: Leases,
        *,
        clock: Callable[[], dt.datetime],
        stop: threading.Event | None = None,
    ) -> None:
        self.outbox = outbox
        self.leases = leases
        self.interval = leases.lease_seconds / 3
        self.stop = stop or threading.Event()
        self.clock = clock
        self.beats = 0  # renewals that committed
        self.failures = 0  # renewals that raised (logged)
        self._lock = threading.Lock()  # held while a renewal runs; close() waits for it
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

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
        """Renew now: push back every lease this worker holds; returns the rows of the fence
        renewed. Does nothing once stopped. Raises what the outbox raises (the loop logs it)."""
        with self._lock:
            if self.stop.is_set():
                return 0
            at = time.monotonic()  # before the statement: the lease runs from no later
            held = self.outbox.extend(now=self.clock())
            self.beats += 1
            return self.leases.renewed(held, at=at)

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried, never fatal
                self.failures += 1
                log.debug(
                    "heartbeat: could not renew the leases (%s: %s); trying again in %.1fs",
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                    self.interval,
                )
