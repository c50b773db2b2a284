"""What ``send``, ``worker``, ``demo`` and ``issues retry`` share: signals, the progress bar
(``_progress``, around ``delivery.run.deliver_issue``, the delivery runner), the outage line, the
summary table."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from weekly_mailer.clock import utcnow

if TYPE_CHECKING:
    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend
    from weekly_mailer.delivery.processes import Crew
    from weekly_mailer.delivery.worker import Stats
    from weekly_mailer.store.db import Database


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and the first Ctrl-C set ``stop`` (finish in-flight, hand back the rest).

    A second Ctrl-C only cuts the wait for the messages in flight (``hurry_for(stop)``): it never
    raises, so the results already in hand are still recorded and the rest handed back; no row
    is left in ``sending``.
    """
    from weekly_mailer.delivery.worker import hurry_for

    previous: dict[int, Any] = {}
    hurry = hurry_for(stop)

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT and not hurry.is_set():
            hurry.set()
            os.write(2, b"\nStopping now: messages in flight are handed back for the next run.\n")
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (int(signal.SIGTERM), int(signal.SIGINT)):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def deliver_with_progress(
    db: Database,
    settings: Settings,
    backend: Backend,
    issue_id: int,
    *,
    stop: threading.Event,
    total: int,
    max_wait: float = 60.0,
    clock: Callable[[], dt.datetime] = utcnow,
    crew: Crew | None = None,
) -> Stats:
    """:func:`weekly_mailer.delivery.run.deliver_issue` with a live progress bar on stderr,
    in ``processes`` delivery processes (their figures added up); ``crew``: those processes,
    started already (``processes.Crew``)."""
    from weekly_mailer.cli._progress import SendProgress
    from weekly_mailer.delivery.processes import process_count
    from weekly_mailer.delivery.run import deliver_issue

    processes = crew.n if crew is not None else process_count(settings, backend, clock, rows=total)
    if processes > 1:
        click.echo(f"Sending with {processes} delivery processes.")
    with SendProgress(total) as progress:
        return deliver_issue(
            db.sessions,
            settings,
            backend,
            issue_id,
            stop=stop,
            max_wait=max_wait,
            on_progress=progress.update,
            on_outage=say_outage,
            clock=clock,
            processes=processes,
            crew=crew,
        )


def say_outage(line: str) -> None:
    """The runner's one line per outage, on stderr."""
    click.echo(line, err=True)


def summary_table(title: str, counts: dict[str, int], stats: Stats | None = None) -> None:
    """Print the per-state counts (and this run's figures) as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    click.echo(title)
    table = Table()
    table.add_column("state")
    table.add_column("rows", justify="right")
    for state, n in counts.items():
        table.add_row(state, str(n))
    table.add_row("total", str(sum(counts.values())), style="bold")
    Console(width=100).print(table)
    if stats is not None:
        elapsed = time.monotonic() - stats.started
        click.echo(
            f"This run: {stats.sent} sent, {stats.deferred} deferred, {stats.failed} failed, "
            f"{stats.skipped} skipped in {elapsed:.1f}s ({stats.rate():.1f} msg/s)."
        )


class EarlyCrew:
    """``send``'s delivery processes, started as early as is safe (``processes.Crew``).

    Made before the database is opened: the processes are forked at once when
    ``processes.fork_is_safe`` (ready in milliseconds, sharing what this process imported),
    as many as ``processes`` calls for. ``for_rows`` then gives the crew for that many rows
    (``None``: too few for more than one process, and the crew is dismissed), spawning one
    now if none was forked. Leaving the block dismisses a crew that got no job.
    """

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        start: bool = True,
    ) -> None:
        from weekly_mailer.delivery.processes import Crew, fork_is_safe, process_count

        self.settings, self.backend, self.clock = settings, backend, clock
        self.crew: Crew | None = None
        if start and fork_is_safe(settings):
            n = process_count(settings, backend, clock)
            if n > 1:
                self.crew = Crew(settings, n, clock=clock, method="fork")

    def for_rows(self, rows: int) -> Crew | None:
        from weekly_mailer.delivery.processes import Crew, process_count

        n = process_count(self.settings, self.backend, self.clock, rows=rows) if rows else 1
        if n <= 1:
            self.close()
            return None
        if self.crew is None:
            self.crew = Crew(self.settings, n, clock=self.clock)
        return self.crew

    def close(self) -> None:
        if self.crew is not None:
            crew, self.crew = self.crew, None
            crew.close()

    def __enter__(self) -> EarlyCrew:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
