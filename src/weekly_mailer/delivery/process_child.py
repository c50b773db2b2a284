"""One delivery process of a crew (``processes.Crew``): started by the parent, it dies with it,
follows its flags, and runs its job's worker under ``outages.ride_out``.

The child ignores SIGINT (a Ctrl-C in a terminal reaches the whole process group: the parent
decides what it means) and stops on SIGTERM or the parent's STOP flag; the parent's wake-ups
reach its worker within 20 ms. A database outage is waited out here, in the child, as in a
single process; the child tells the parent (an ``outage`` report) and the parent says it once.
A child whose parent dies (SIGKILL) is killed too (Linux ``PR_SET_PDEATHSIG``), so a killed
``send`` or ``run`` leaves no sender behind; what it had accepted is in its journal.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import gc
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from weekly_mailer import errors
from weekly_mailer.delivery.crew_shared import (
    HALTED,
    HURRY,
    PROGRESS_SECONDS,
    STOP,
    Events,
    Job,
    figures,
)
from weekly_mailer.delivery.outages import ride_out
from weekly_mailer.delivery.policy import Stats, hurry_for
from weekly_mailer.logs import configure_logging

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

log = logging.getLogger("weekly_mailer.delivery.processes")


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(1)


def child_main(
    index: int,
    settings: Settings,
    events: Events,
    reports: multiprocessing.Queue[tuple[Any, ...]],
    jobs: multiprocessing.Queue[Job | None],
    clock: Callable[[], dt.datetime],
    parent: int,
) -> None:
    _die_with_parent(parent)
    if events.metrics is not None:  # before anything is counted
        from weekly_mailer import metrics

        metrics.child_init(events.metrics)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what a Ctrl-C means
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    configure_logging(settings.log_level)

    last = [0.0]

    def progress(stats: Stats) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_SECONDS:
            last[0] = now
            reports.put(("progress", index, figures(stats)))

    preload()  # while the parent composes
    job = _job(jobs, events)
    if job is None:  # dismissed: nothing to send
        _leave(reports)
    stats = Stats()
    error: tuple[str, str, int | None] | None = None
    try:
        stats, error = _work(index, settings, job, events, stop, progress, reports, clock)
    except errors.WeeklyMailerError as exc:
        error = (type(exc).__name__, str(exc), getattr(exc, "code", None))
    except Exception as exc:  # noqa: BLE001 - reported as one line; the log keeps the cause
        log.debug("delivery process %d failed", index, exc_info=exc)
        reason = f"delivery process {index} failed: {type(exc).__name__}: {exc}"
        error = ("DeliveryError", reason.splitlines()[0], None)
    reports.put(("done", index, figures(stats), error))
    _leave(reports)


def preload() -> None:
    """Import what the job needs, before it comes."""
    import weekly_mailer.delivery.backends  # noqa: F401
    import weekly_mailer.delivery.render  # noqa: F401
    import weekly_mailer.delivery.worker  # noqa: F401
    import weekly_mailer.store.db  # noqa: F401

    gc.freeze()  # modules live as long as the process: not the collector's business


def _job(jobs: multiprocessing.Queue[Job | None], events: Events) -> Job | None:
    """The parent's job, or ``None`` when it dismisses the crew (or stops before giving one)."""
    while True:
        try:
            return jobs.get(timeout=0.1)
        except queue.Empty:
            if events.flags.value & STOP:
                return None


def _leave(reports: multiprocessing.Queue[tuple[Any, ...]]) -> NoReturn:
    """Exit once the reports are out, skipping the interpreter's teardown (a tenth of a second
    and more of freeing objects one by one, which the parent would wait for): the database and
    the backend are closed already, and the logs flushed here."""
    reports.close()
    reports.join_thread()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _work(
    index: int,
    settings: Settings,
    job: Job,
    events: Events,
    stop: threading.Event,
    progress: Callable[[Stats], None],
    reports: multiprocessing.Queue[tuple[Any, ...]],
    clock: Callable[[], dt.datetime],
) -> tuple[Stats, tuple[str, str, int | None] | None]:
    from weekly_mailer.delivery.backends import resolve_backend
    from weekly_mailer.delivery.render import IssueRenderers
    from weekly_mailer.delivery.worker import Worker
    from weekly_mailer.store.db import Database

    # The parent checked the schema already (a child skips alembic's migration scripts).
    with Database(settings, check=False) as db, resolve_backend(settings) as backend:
        worker = Worker(
            db.sessions,
            settings,
            backend,
            IssueRenderers(db.sessions, settings, clock=clock),
            stop=stop,
            clock=clock,
            on_progress=progress,
            **job.scope,
        )
        worker.breaker.share(events.streak)  # 20 in a row across the children, not each
        hurry = hurry_for(stop)

        def follow() -> None:  # the parent's events into this process's
            wakes = events.wakes.value
            while not events.flags.value & STOP:
                if events.wakes.value != wakes:
                    wakes = events.wakes.value
                    worker.wake()
                time.sleep(0.02)
            if events.flags.value & HALTED:  # before the stop: the held bounces are dropped
                worker.halt(events.reason.value.decode(errors="replace"))
            stop.set()
            events.wait_for(HURRY)
            hurry.set()

        def outage(line: str) -> None:  # the parent says it, once for all of its children
            reports.put(("outage", index, line))

        def back(line: str) -> None:  # ... and that it is over, once they all are back
            reports.put(("back", index, line))

        threading.Thread(target=follow, name="follow-parent", daemon=True).start()
        reports.put(("started", index, worker.owner))
        try:
            ride_out(
                worker, until_idle=job.until_idle, max_wait=job.max_wait, poll=job.poll,
                forever=job.forever, on_outage=outage, on_back=back,
                retry_pause=job.retry_pause,
            )  # fmt: skip
        except errors.WeeklyMailerError as exc:
            return worker.stats, (type(exc).__name__, str(exc), getattr(exc, "code", None))
        return worker.stats, None
