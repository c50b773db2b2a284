"""``weekly-mailer run``: one process with the scheduler, the web app and a delivery worker.

Threads: APScheduler 3.x ``BackgroundScheduler`` (in-memory job store: APScheduler does not
support two schedulers on one job store, and the database already guarantees one issue per
week), waitress serving the web app, and the delivery runner (``delivery.runner.Runner``, the
one every command delivers with: ``processes`` delivery processes, like ``send``), which
delivers for ever: woken by the weekly job after enqueueing, by a sign-up's confirmation, by
the retry job every minute, and polling every second meanwhile (deferred rows that came due,
what a previous process left); it rides out database outages itself.

Jobs:

- ``weekly-send``: a ``CronTrigger`` at the configured time, running :meth:`WeeklyJob.reconcile`;
- ``reconcile``: the same every minute, so a standby that becomes leader, or an article that
  could not be read at the send time, is handled within the grace window;
- ``retry-deferred``: wakes the delivery worker every minute;
- with ``bounce_mailbox``, not a job but a thread of its own (``scheduler.mailbox_poll``):
  reports applied as they arrive (IMAP IDLE), else every ``bounce_poll_seconds``;
- ``proofs`` (with ``editors`` and ``proof_hours``): :meth:`ProofJob.run` every minute, so
  the week's proof goes to the editors ``proof_hours`` before the send, and again whenever the
  issue's content changes (``scheduler.proof_job``).

SIGTERM and SIGINT stop cleanly: the scheduler first (no new job starts; a running one ends its
transaction), then the runner (stops claiming, finishes the messages in flight, writes their
results and hands the rest of its batch back to the queue), then the web server.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from weekly_mailer.errors import WeeklyMailerError
from weekly_mailer.scheduler.observe import note_run, outcome_of
from weekly_mailer.scheduler.timing import format_fire_time

if TYPE_CHECKING:
    from weekly_mailer.scheduler.job import WeeklyJob
    from weekly_mailer.scheduler.proof_job import ProofJob

log = logging.getLogger("weekly_mailer.daemon")


class Delivery(Protocol):
    """What the daemon needs of its delivery (``delivery.runner.Runner``)."""

    def start(self, *, poll: float = 1.0, retry_pause: float | None = None) -> Any: ...

    def wake(self) -> None: ...

    def close(self, timeout: float = 60.0) -> bool: ...


class Background(Protocol):
    """A thread the daemon starts and stops with itself (the bounce mailbox's reader)."""

    def start(self) -> None: ...

    def close(self, timeout: float = 30.0) -> None: ...


class ProgressLog:
    """A worker's ``on_progress``: one INFO line at most every ``every`` seconds during a send."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self._last = time.monotonic()

    def __call__(self, stats: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            log.info(
                "delivery under way: %d sent, %d deferred, %d failed so far",
                stats.sent,
                stats.deferred,
                stats.failed,
            )


class WebServer:
    """The web app under waitress, in a thread; bound at construction (errors surface early)."""

    def __init__(self, app: Any, *, host: str, port: int, threads: int = 4, **options: Any) -> None:
        import socket

        from waitress.server import create_server

        # Bind here, so that a taken port is an OSError before waitress starts anything.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
        try:
            self._server: Any = create_server(
                app,
                sockets=[sock],
                threads=threads,
                ident="weekly-mailer",
                clear_untrusted_proxy_headers=True,
                **options,
            )
        except BaseException:
            sock.close()
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="web", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._server.effective_host}:{self._server.effective_port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish, close every socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif self._thread.ident is None:  # never started: close what was bound
            self._close()

    def _loop(self) -> None:
        from waitress import wasyncore

        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=0.2, map=self._server._map, use_poll=True, count=1)
        finally:
            self._close()

    def _close(self) -> None:
        from waitress import wasyncore

        server = self._server
        server.task_dispatcher.shutdown(timeout=5)  # requests in flight finish
        wasyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=5)  # flush
        wasyncore.close_all(server._map)


class Daemon:
    """The scheduler, the web server and the delivery service of one ``run`` process."""

    def __init__(
        self,
        job: WeeklyJob,
        *,
        delivery: Delivery | None = None,
        web: WebServer | None = None,
        reconcile_seconds: float = 60.0,
        retry_seconds: float = 60.0,
        on_stop: Callable[[], None] | None = None,
        proofs: ProofJob | None = None,
        mailbox: Background | None = None,
    ) -> None:
        self.job = job
        self.proofs = proofs
        self.mailbox = mailbox
        self.delivery = delivery
        self.web = web
        self.on_stop = on_stop
        self.stopping = threading.Event()
        settings = job.settings
        self.scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(2)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": max(1, int(settings.grace_hours * 3600)),
            },
            timezone=settings.zone,
        )
        self.scheduler.add_job(
            self._reconcile, job.schedule.trigger(), id="weekly-send", name="weekly send"
        )
        self.scheduler.add_job(
            self._reconcile,
            "interval",
            seconds=reconcile_seconds,
            id="reconcile",
            name="catch-up and leader check",
        )
        if proofs is not None and proofs.enabled:
            self.scheduler.add_job(
                self._proofs,
                "interval",
                seconds=reconcile_seconds,
                id="proofs",
                name="the week's proof to the editors",
            )
        if delivery is not None:
            self.scheduler.add_job(
                delivery.wake,
                "interval",
                seconds=retry_seconds,
                id="retry-deferred",
                name="re-deliver due deferred rows",
            )

    def start(self) -> None:
        """Check the most recent send time, then start every thread."""
        if self.delivery is not None:
            self.delivery.start()  # it finishes what a previous process left first
        self._proofs()
        self._reconcile()
        self.scheduler.start()
        if self.mailbox is not None:
            self.mailbox.start()
        if self.web is not None:
            self.web.start()
        nxt = self.job.schedule.next_after(self.job.clock())
        log.info(
            "daemon started: next send %s; %s",
            format_fire_time(nxt, self.job.settings.zone),
            f"web app at {self.web.url}" if self.web is not None else "no web app",
        )
        if not self.job.settings.article_source.strip():
            log.warning("article_source is not set: every week will be skipped until it is")

    def _reconcile(self) -> None:
        if self.stopping.is_set():
            return
        outcome, leader = "error", None
        try:
            action = self.job.reconcile()
            outcome, leader = outcome_of(action), action is not None
        except WeeklyMailerError as exc:
            log.error("weekly job: %s", exc)
        except Exception:  # noqa: BLE001 - a job's crash must not end the daemon
            log.exception("weekly job crashed; it runs again within a minute")
        note_run(self.job, outcome, leader=leader)

    def _proofs(self) -> None:
        if self.stopping.is_set() or self.proofs is None:
            return
        try:
            self.proofs.run()
        except WeeklyMailerError as exc:
            log.error("proof job: %s", exc)
        except Exception:  # noqa: BLE001 - a job's crash must not end the daemon
            log.exception("proof job crashed; it runs again within a minute")

    def stop(self) -> None:
        """Stop the scheduler, then the worker, then the web server. Safe to call twice."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        log.info("stopping: no new jobs; finishing the messages in flight")
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)  # a running job finishes its transaction
        if self.mailbox is not None:
            self.mailbox.close()
        if self.delivery is not None and not self.delivery.close():
            log.warning("the delivery did not stop in time; its leases will expire")
        if self.web is not None:
            self.web.stop()
        self.job.leadership.release()
        if self.on_stop is not None:
            self.on_stop()
        log.info("stopped cleanly")

    def run_until_signalled(self) -> None:
        """Start, wait for SIGTERM or SIGINT, stop. Call from the main thread."""
        stop = threading.Event()

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            stop.set()

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not stop.wait(1.0):
                pass
        finally:
            self.stop()
            for s, h in previous.items():
                signal.signal(s, h)
