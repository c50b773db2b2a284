"""Riding out an outage: the one loop around a worker, in every process that delivers.

A database fault (a lost connection, a PostgreSQL restart, SQLite's lock held past its busy
timeout, a full disk) reaches the worker as ``DatabaseUnavailableError`` (``store.db.
outage_guard``). It is not a crash: ``ride_out`` says so once (``on_outage``: one line per
outage, whatever the number of retries), waits with backoff (1 s, doubling to 30 s), and runs
the worker again, which folds its journal and hands back what it held before it claims anew.
An outage is over as soon as the outbox reached the database again (``Outbox.last_ok``), so
the next one is a new outage with a line of its own. Only an outage longer than
``outage_limit_seconds`` ends the command: ``OutageTooLongError``, one line, exit code 2. The
cause of each failure stays in the log at DEBUG; nothing is printed as a traceback.

With ``forever`` (``worker``, ``run``, ``serve``'s confirmations) any other stop (a backend
that is down, the circuit breaker, a bad setup) is logged in one line and tried again every
``throttle_pause_seconds``, and so is an unexpected error (logged with its traceback: a bug,
not an outage).
"""

from __future__ import annotations

import logging
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

__all__ = ["ride_out"]


def ride_out(
    worker: Worker,
    *,
    until_idle: bool,
    max_wait: float = 60.0,
    poll: float = 1.0,
    forever: bool = False,
    on_outage: Callable[[str], None] | None = None,
    retry_pause: float | None = None,
) -> Stats:
    """Run ``worker`` (``Worker.run``) until it ends on its own (``until_idle``) or is stopped,
    waiting out outages as the module says; returns its figures. ``retry_pause``: the wait
    after any other stop with ``forever`` (default ``throttle_pause_seconds``)."""
    limit = worker.settings.outage_limit_seconds
    say = on_outage or log.warning
    began: float | None = None  # when the current outage began (monotonic)
    failed_at = 0.0  # when the worker last failed for it
    delay = FIRST_BACKOFF
    while True:
        try:
            worker.run(until_idle=until_idle, max_wait=max_wait, poll=poll)
        except DatabaseUnavailableError as exc:
            now = time.monotonic()
            log.debug("delivery: the database is unavailable", exc_info=exc)
            if began is None or worker.outbox.last_ok > failed_at:  # a new outage
                began, delay = now, FIRST_BACKOFF
                say(
                    f"database unavailable ({exc}): delivery waits and retries "
                    f"for up to {limit:g} s"
                )
            elif now - began >= limit:
                raise OutageTooLongError(
                    f"database unavailable for {now - began:.0f} s, longer than "
                    f"outage_limit_seconds ({limit:g} s): {exc}"
                ) from exc
            failed_at = now
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
