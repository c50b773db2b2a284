"""The delivery runner: the one way every command delivers (``send``, ``worker``, ``run``,
``serve``'s confirmations, ``demo``, ``issues retry``, ``subscribers add``).

::

    Runner(settings, sessions, backend, scope, processes)
      ├─ run(): in this thread, until idle (a send) or until stopped (forever: a daemon)
      ├─ start() / close(): the same in a thread of its own (``serve``, ``run``)
      ├─ wake(): a row was committed: look now (every process of the crew)
      └─ one process ──> outages.ride_out(Worker)      many ──> processes.Crew
                             │                                  └─ each child: ride_out(Worker)
                             └─ Worker: claim (fenced leases) → render → backend → journal
                                        → record; heartbeat; stop on signal

It owns the three answers every loop used to give its own way: **waking** (``wake``, and a
poll for deferred rows that come due), **stopping** (the ``stop`` event: finish what is in
flight, hand the rest back; a second Ctrl-C cuts it short) and **outages** (``ride_out``:
one line, backoff, carry on; exit 2 past ``outage_limit_seconds``). With ``processes`` above
one it runs a crew (``processes.Crew``): the same worker in each child, the figures summed,
one outage line for all. Nothing here prints: the edges pass ``on_progress`` and
``on_outage``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from weekly_mailer.clock import utcnow
from weekly_mailer.delivery.outages import ride_out
from weekly_mailer.delivery.policy import Stats
from weekly_mailer.delivery.processes import Crew, Job
from weekly_mailer.delivery.render import IssueRenderers
from weekly_mailer.delivery.worker import Worker
from weekly_mailer.errors import WeeklyMailerError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend

log = logging.getLogger("weekly_mailer.delivery")

__all__ = ["Runner"]

CREW_RESTART_SECONDS = 5.0  # a daemon's crew that ended on an error starts again after this


class Runner:
    """Delivers the outbox rows of ``scope`` (``issue_id=…``, ``kind=…``, or everything
    sending) with ``processes`` delivery processes (1: a worker in this process).

    ``backend`` is used by the in-process worker; a crew's children resolve their own. ``crew``:
    delivery processes started already (``processes.Crew``; ``send`` starts them while it
    composes). ``stop``: set it to stop (SIGTERM, Ctrl-C).
    """

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        backend: Backend,
        *,
        scope: dict[str, Any] | None = None,
        processes: int = 1,
        crew: Crew | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        on_progress: Callable[[Stats], None] | None = None,
        on_outage: Callable[[str], None] | None = None,
        on_start: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.backend = backend
        self.scope = dict(scope or {})
        self.crew = crew
        self.processes = crew.n if crew is not None else max(1, processes)
        self.stop = stop or threading.Event()
        self.clock = clock
        self.on_progress = on_progress
        self.on_outage = on_outage
        self.on_start = on_start
        self.stats = Stats()
        self.worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._running_crew: Crew | None = None
        if self.processes == 1:
            self.worker = Worker(
                sessions, settings, backend, IssueRenderers(sessions, settings, clock=clock),
                stop=self.stop, clock=clock, on_progress=on_progress, **self.scope,
            )  # fmt: skip
            self.stats = self.worker.stats

    @property
    def owners(self) -> list[str]:
        """The lease owner name of the in-process worker (a crew says its own in ``on_start``)."""
        return [] if self.worker is None else [self.worker.owner]

    def run(
        self,
        *,
        until_idle: bool = True,
        max_wait: float = 60.0,
        poll: float = 1.0,
        forever: bool = False,
        retry_pause: float | None = None,
    ) -> Stats:
        """Deliver in this thread until idle (nothing due within ``max_wait`` seconds) or, with
        ``forever``, until ``stop``; outages are waited out (``outages.ride_out``). Raises what
        ends the delivery (a backend that is down, the breaker, an outage past its limit)
        unless ``forever``."""
        if self.worker is not None:
            if self.on_start is not None:
                self.on_start(self.owners)
            return ride_out(
                self.worker, until_idle=until_idle, max_wait=max_wait, poll=poll,
                forever=forever, on_outage=self.on_outage, retry_pause=retry_pause,
            )  # fmt: skip
        job = Job(self.scope, until_idle=until_idle, max_wait=max_wait, forever=forever,
                  poll=poll, retry_pause=retry_pause)  # fmt: skip
        while True:
            given = self._take_crew()
            crew = given or Crew(self.settings, self.processes, clock=self.clock)
            self._running_crew = crew
            try:
                self.stats = crew.run(
                    job, stop=self.stop, on_progress=self.on_progress,
                    on_start=self.on_start, on_outage=self.on_outage,
                )  # fmt: skip
            except WeeklyMailerError as exc:
                if not forever or self.stop.is_set():
                    raise
                log.error("delivery stopped: %s; starting again in %.0fs", exc,
                          CREW_RESTART_SECONDS)  # fmt: skip
                self.stop.wait(CREW_RESTART_SECONDS)
                continue
            finally:
                self._running_crew = None
                if given is None:
                    crew.close()
            if not forever or self.stop.is_set():
                return self.stats

    def _take_crew(self) -> Crew | None:
        with self._lock:
            crew, self.crew = self.crew, None
            return crew

    def wake(self) -> None:
        """A row was committed: look for due rows now, in every delivery process."""
        if self.worker is not None:
            self.worker.wake()
        crew = self._running_crew
        if crew is not None:
            crew.wake()

    # -- in a thread of its own (serve, run) ----------------------------------------------------

    def start(self, *, poll: float = 1.0, retry_pause: float | None = None) -> Runner:
        """Deliver for ever in a thread of its own, until :meth:`close`."""

        def loop() -> None:
            try:
                self.run(until_idle=False, poll=poll, forever=True, retry_pause=retry_pause)
            except Exception:  # noqa: BLE001 - the thread must say why it ended
                log.exception("the delivery runner failed")

        self._thread = threading.Thread(target=loop, name="delivery", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 60.0) -> bool:
        """Stop: finish and record what is in flight, hand the rest back, close the backend.
        Returns whether the delivery stopped within ``timeout`` seconds."""
        self.stop.set()
        self.wake()
        stopped = True
        if self._thread is not None and self._thread.is_alive():
            deadline = time.monotonic() + timeout
            self._thread.join(max(0.0, deadline - time.monotonic()))
            stopped = not self._thread.is_alive()
        self.backend.close()
        return stopped
