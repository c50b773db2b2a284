"""Riding out an outage: the one loop around a worker, in every process that delivers.

A database fault (a lost connection, a PostgreSQL restart, SQLite's lock held past its busy
timeout, a full disk) reaches the worker as ``DatabaseUnavailableError`` (``store.db.
outage_guard``). It is not a crash. The outbox tells ``OutageLines`` (its ``watch``) the moment
any verb meets one, in whichever thread (the recorder's write, a claim, the heartbeat), and the
line is said then (``on_outage``: one line per outage, whatever the number of retries), not
when the worker has given up, which on SQLite can be another busy timeout later. The worker
then stops without writing (its journal kept, its own), ``ride_out`` waits with backoff (1 s,
doubling to 30 s) and probes (``Worker.recover``: it records what the kept journal holds and
hands back what the worker held, a write). The first verb that reaches the database again ends
the outage with a second line (``on_back``: how long it lasted); the worker runs again, and the
next failure is a new outage with lines of its own. Only an outage longer than
``outage_limit_seconds`` ends the command: ``OutageTooLongError``, one line, exit code 2. The
cause of each failure stays in the log at DEBUG; nothing is printed as a traceback.

With ``forever`` (``worker``, ``run``, ``serve``'s confirmations) any other stop (a backend
that is down, the circuit breaker, a bad setup) is logged in one line and tried again every
``throttle_pause_seconds``, and so is an unexpected error (logged with its traceback: a bug,
not an outage).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer.errors import (
    DatabaseUnavailableError,
    OutageTooLongError,
    WeeklyMailerError,
)

if TYPE_CHECKING:
    from weekly_mailer.delivery.policy import Stats
    from weekly_mailer.delivery.worker import Worker

log = logging.getLogger("weekly_mailer.delivery")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0

__all__ = ["OutageLines", "ride_out"]


class OutageLines:
    """The two lines of an outage, each said once, by whichever thread meets the moment first
    (the outbox's ``Watch``: its verbs run in the delivering, recording and heartbeat
    threads): the first failure begins it, the first verb that reaches the database after
    it ends it."""

    def __init__(self, say: Callable[[str], None], say_back: Callable[[str], None],
                 limit: float) -> None:  # fmt: skip
        self.say, self.say_back, self.limit = say, say_back, limit
        self.began: float | None = None  # when the current outage began (monotonic)
        self.count = 0  # outages said so far
        self._lock = threading.Lock()

    def failed(self, exc: Exception) -> None:
        with self._lock:
            if self.began is not None:
                return
            self.began = time.monotonic()
            self.count += 1
        self.say(
            f"database unavailable ({exc}): delivery waits and retries for up to {self.limit:g} s"
        )

    def reached(self) -> None:
        if self.began is None:  # the common case, without the lock
            return
        with self._lock:
            if self.began is None:
                return
            took, self.began = time.monotonic() - self.began, None
        self.say_back(f"database available again after {took:.0f} s: delivery goes on")


def ride_out(
    worker: Worker,
    *,
    until_idle: bool,
    max_wait: float = 60.0,
    poll: float = 1.0,
    forever: bool = False,
    on_outage: Callable[[str], None] | None = None,
    on_back: Callable[[str], None] | None = None,
    retry_pause: float | None = None,
) -> Stats:
    """Run ``worker`` (``Worker.run``) until it ends on its own (``until_idle``) or is stopped,
    waiting out outages as the module says; returns its figures. ``on_outage``: told the line
    an outage begins with; ``on_back``: the line it ends with (by default ``on_outage`` too).
    ``retry_pause``: the wait after any other stop with ``forever`` (default
    ``throttle_pause_seconds``)."""
    limit = worker.settings.outage_limit_seconds
    say = on_outage or log.warning
    lines = OutageLines(say, on_back or say, limit)
    worker.outbox.watch = lines
    delay = FIRST_BACKOFF
    recover = False
    while True:
        seen = lines.count
        try:
            if recover:  # the probe: the outage is over once it reaches the database
                worker.recover()
                recover = False
            worker.run(until_idle=until_idle, max_wait=max_wait, poll=poll)
        except DatabaseUnavailableError as exc:
            now = time.monotonic()
            log.debug("delivery: the database is unavailable", exc_info=exc)
            recover = True
            if lines.count == seen:  # nothing said it yet: a new outage
                lines.failed(exc)
            began = lines.began
            if began is None:  # over already (the worker gave up after a verb got through)
                delay = FIRST_BACKOFF
                continue
            if lines.count != seen:
                delay = FIRST_BACKOFF
            elif now - began >= limit:
                raise OutageTooLongError(
                    f"database unavailable for {now - began:.0f} s, longer than "
                    f"outage_limit_seconds ({limit:g} s): {exc}"
                ) from exc
            worker.stop.wait(min(delay, max(0.0, began + limit - now)))
            delay = min(2 * delay, MAX_BACKOFF)
            if worker.stop.is_set():
                return worker.stats
            continue
        except WeeklyMailerError as exc:  # a backend down, the breaker, a bad setup
            if not forever:
                raise
            pause = worker.settings.throttle_pause_seconds if retry_pause is None else retry_pause
            log.error("delivery stopped: %s; trying again in %.0fs", exc, pause)
            worker.stop.wait(pause)
        except Exception:
            if not forever:
                raise
            pause = worker.settings.throttle_pause_seconds if retry_pause is None else retry_pause
            log.exception("delivery failed unexpectedly; trying again in %.0fs", pause)
            worker.stop.wait(pause)
        if not forever or worker.stop.is_set():
            return worker.stats
