"""Every core: ``processes`` delivery processes, each a ``Worker`` claiming from the outbox.

The children are started with multiprocessing's ``spawn`` context (a fresh interpreter: no
inherited threads, connections or locks) and each opens its own database engine and backend.
They share the work through the outbox alone: claims are leases (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so no row goes to two of them.

``concurrency`` (connections) and ``send_rate`` are totals: each child gets its share. A child
reports its ``Stats`` to the parent on a ``multiprocessing`` queue (a few times a second, and
once when it ends, with the error that stopped it, if any); the parent adds them up for the
progress bar and the summary.

What the children share beyond the outbox, in shared memory the parent made: the stop flags
(below) and the circuit breaker's streak (``breaker.SharedStreak``: 20 identical refusals in a
row across all of them stop the send, not 20 in each). With ``metrics_address`` set, every
process writes its metrics into one directory (``metrics.multiprocess_directory``, made by the
parent before the children start; each child calls ``metrics.child_init`` first thing) and the
parent's listener serves their sum, with the database gauges once, from the parent. A killed
child's counters stay in its file; the parent calls ``metrics.child_exited`` for each child
that ended.

Stopping: the parent owns the signals. The children ignore SIGINT (a Ctrl-C in a terminal
reaches the whole process group) and follow the parent's two events instead: ``stop`` (finish
in flight, hand the rest back) and ``hurry`` (a second Ctrl-C: cut the connections). SIGTERM
sent to a child stops that child the same way. A child whose parent dies (SIGKILL) is killed
too (Linux ``PR_SET_PDEATHSIG``), so a killed ``send`` leaves no sender behind; what it had
accepted is in its journal, folded at the next start, and its leases expire as after any crash.

Outages: each child waits a database outage out itself (``outages.ride_out``) and reports its
start and its end; the parent says each once (``on_outage``) for all of them, not once a child:
the start when the first child meets it, the end when the last of them is back. The child side is
``process_child.py``; what both sides share, ``crew_shared.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import pickle
import queue
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from weekly_mailer import errors
from weekly_mailer.clock import utcnow
from weekly_mailer.delivery.breaker import SharedStreak
from weekly_mailer.delivery.crew_shared import COUNTED, HALTED, HURRY, STOP, Events, Job
from weekly_mailer.delivery.policy import Stats, hurry_for
from weekly_mailer.delivery.process_child import child_main, preload

if TYPE_CHECKING:
    from multiprocessing.context import ForkContext, SpawnContext

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend

log = logging.getLogger(__name__)


__all__ = ["Crew", "Events", "Job", "deliver_in_processes", "fork_is_safe", "process_count"]


def process_count(
    settings: Settings,
    backend: Backend,
    clock: Callable[[], dt.datetime] = utcnow,
    *,
    rows: int | None = None,
) -> int:
    """How many delivery processes to run: ``processes``, at most one per connection and one
    per claim (``batch_size``) of the ``rows`` to send, when known; one when the backend lives
    in this process only (``memory://``) or the clock cannot be handed to another process (a
    test's)."""
    n = min(settings.processes, settings.concurrency)
    if rows is not None:  # a process starts in about a second: not for a handful of messages
        n = min(n, max(1, rows // settings.batch_size))
    if n <= 1 or getattr(backend, "in_process_only", False):
        return 1
    try:
        pickle.dumps(clock)
    except (pickle.PicklingError, AttributeError, TypeError):
        return 1
    return n


def share(settings: Settings, n: int, i: int) -> Settings:
    """Child ``i`` of ``n``'s settings: its part of the connections and of the rate."""
    connections = settings.concurrency // n + (1 if i < settings.concurrency % n else 0)
    return settings.replace(
        concurrency=max(1, connections), send_rate=settings.send_rate / n, processes=1
    )


def deliver_in_processes(
    settings: Settings,
    n: int,
    job: Job,
    *,
    stop: threading.Event,
    on_progress: Callable[[Stats], None] | None = None,
    on_start: Callable[[list[str]], None] | None = None,
    on_outage: Callable[[str], None] | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    crew: Crew | None = None,
) -> Stats:
    """Run ``job`` in ``n`` child processes until all end; their figures added up.

    ``crew``: children started earlier (``Crew``, ``n`` of them), which take the job now.
    Raises the first error a child stopped with (the same class and one-line message), after
    every child has ended; the others are stopped as soon as one fails. ``on_outage``: told
    once per outage the children wait out.
    """
    if crew is None:
        with Crew(settings, n, clock=clock) as crew:
            return crew.run(job, stop=stop, on_progress=on_progress, on_start=on_start,
                            on_outage=on_outage)  # fmt: skip
    return crew.run(
        job, stop=stop, on_progress=on_progress, on_start=on_start, on_outage=on_outage
    )


class Crew:
    """``n`` delivery processes, started before their job is known.

    Starting a process costs about half a second (a fresh interpreter importing the delivery
    modules); ``send`` starts its crew before it reads and composes the article, and hands it
    the job once the issue is enqueued (``run``). A crew that gets no job (nothing to send, the
    confirmation declined, an error) is dismissed when its ``with`` block ends: the children
    leave without touching the database. They are the parent's own children, so a SIGKILLed
    parent takes them with it (``PR_SET_PDEATHSIG``) either way.

    ``method``: multiprocessing's start method. ``spawn`` (fresh interpreters) is always safe;
    ``fork`` (ready at once, sharing the parent's imported modules) only while the parent has
    one thread and no open database connection (``fork_is_safe``): a forked child that closed
    an inherited SQLite connection would drop the parent's locks on the file.
    """

    def __init__(
        self,
        settings: Settings,
        n: int,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        method: Literal["spawn", "fork"] = "spawn",
    ) -> None:
        ctx: SpawnContext | ForkContext = (
            multiprocessing.get_context("fork")
            if method == "fork"
            else multiprocessing.get_context("spawn")
        )
        if method == "fork":
            preload()  # once, here: the children share it
            sys.stdout.flush()  # or a child's exit would write this process's output again
            sys.stderr.flush()
        self.n = n
        self.events = Events(
            ctx.RawValue("i", 0),
            ctx.RawArray("c", 1000),
            SharedStreak(ctx),
            ctx.RawValue("i", 0),
            _metrics_directory(settings),
        )
        self.reports: multiprocessing.Queue[tuple[Any, ...]] = ctx.Queue()
        self.jobs: multiprocessing.Queue[Job | None] = ctx.Queue()
        self.children = [
            ctx.Process(
                target=child_main,
                args=(i, share(settings, n, i), self.events, self.reports, self.jobs, clock,
                      os.getpid()),
                name=f"weekly-mailer-delivery-{i}",
            )  # fmt: skip
            for i in range(n)
        ]
        self._given = False
        for child in self.children:
            child.start()

    def __enter__(self) -> Crew:
        return self

    def wake(self) -> None:
        """A row was committed: every child looks for due rows now."""
        self.events.wake()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Dismiss the children if they never got a job; wait for them to leave."""
        if not self._given:
            self._given = True
            for _ in self.children:
                self.jobs.put(None)
        for child in self.children:
            child.join(timeout=30)
            if child.exitcode is None:  # should not happen: it would keep the leases
                child.kill()
                child.join()
        self.reports.close()
        self.jobs.close()

    def run(
        self,
        job: Job,
        *,
        stop: threading.Event,
        on_progress: Callable[[Stats], None] | None = None,
        on_start: Callable[[list[str]], None] | None = None,
        on_outage: Callable[[str], None] | None = None,
    ) -> Stats:
        """Give every child ``job`` and wait until all have ended (see ``deliver_in_processes``)."""
        if self._given:
            raise RuntimeError("a crew takes one job")
        self._given = True
        n, children, events, reports = self.n, self.children, self.events, self.reports
        for _ in children:
            self.jobs.put(job)
        hurry = hurry_for(stop)
        total = Stats()
        figures: dict[int, dict[str, int]] = {}
        ended: set[int] = set()
        owners: dict[int, str] = {}
        failure: errors.WeeklyMailerError | None = None
        out: set[int] = set()  # the children waiting an outage out now
        try:
            while len(ended) < n:
                if stop.is_set():
                    events.raise_flag(STOP)
                if hurry.is_set():
                    events.raise_flag(HURRY)
                try:
                    kind, i, *rest = reports.get(timeout=0.1)
                except queue.Empty:
                    for i, child in enumerate(children):
                        if i not in ended and not child.is_alive() and child.exitcode is not None:
                            ended.add(i)  # died without a word (killed): its leases expire
                            failure = failure or errors.DeliveryError(
                                f"delivery process {i} died (exit code {child.exitcode})"
                            )
                            events.raise_flag(STOP)
                    continue
                if kind in ("outage", "back"):  # one line each for all the children
                    _outage_report(out, kind, i, rest[0], on_outage or log.warning)
                    continue
                if kind == "started":
                    owners[i] = rest[0]
                    if on_start is not None and len(owners) == n:
                        on_start([owners[k] for k in sorted(owners)])
                    continue
                figures[i] = rest[0]
                if kind == "done":
                    ended.add(i)
                    out.discard(i)
                    if rest[1] is not None and failure is None:
                        failure = _rebuilt(*rest[1])
                        if isinstance(failure, errors.SendHaltedError):  # the others halt too
                            events.reason.value = str(failure).encode()[:999]
                            events.raise_flag(HALTED)
                        events.raise_flag(STOP)  # one child's outage or halt stops the others
                _add_up(total, figures)
                if on_progress is not None:
                    on_progress(total)
        finally:
            if len(ended) < n:  # interrupted here (should not happen): stop the children
                events.raise_flag(STOP)
            for child in children:
                child.join(timeout=None if len(ended) == n else 30)
            _children_exited(events, children)
        if failure is not None:
            raise failure
        return total


def _outage_report(
    out: set[int], kind: str, child: int, line: str, say: Callable[[str], None]
) -> None:
    """A child's outage report: the first child to meet an outage says its line, the last one
    back says the end's; the others' reports of the same outage are not repeated."""
    if kind == "outage":
        if not out:
            say(line)
        out.add(child)
    elif child in out:
        out.discard(child)
        if not out:
            say(line)


def fork_is_safe(settings: Settings) -> bool:
    """Whether this process may start its delivery processes with ``fork`` now: Linux, one
    thread (a lock another thread holds would stay held in the child), no metrics listener
    (its directory is made later) and, the caller's part, no database connection opened yet."""
    return (
        sys.platform.startswith("linux")
        and "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
        and not settings.metrics_address
    )


def _metrics_directory(settings: Settings) -> str | None:
    """Where every process's metrics go while ``metrics_address`` is set: the directory the
    listener (``cli/_metrics.py``) made before it started, or a new one (removed at exit)."""
    if not settings.metrics_address:
        return None
    from weekly_mailer import metrics

    return metrics.multiprocess_directory()


def _children_exited(events: Events, children: list[Any]) -> None:
    """Their counters stay in the directory (a killed child's too: they are written as they
    are counted); their live gauges go (``metrics.child_exited``)."""
    if events.metrics is None:
        return
    from weekly_mailer import metrics

    for child in children:
        if child.pid is not None and child.exitcode is not None:
            metrics.child_exited(child.pid)


def _add_up(total: Stats, figures: dict[int, dict[str, int]]) -> None:
    for name in COUNTED:
        setattr(total, name, sum(f.get(name, 0) for f in figures.values()))


def _rebuilt(name: str, message: str, code: int | None) -> errors.WeeklyMailerError:
    """A child's error as the same class (so the same exit code), with its one line."""
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.WeeklyMailerError)):
        return errors.DeliveryError(message, code=code)
    if issubclass(cls, errors.DeliveryError):
        return cls(message, code=code)
    return cls(message)


