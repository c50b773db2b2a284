"""Prometheus metrics: every definition, and the listener of their own (``metrics_address``).

Floor level: it imports ``prometheus_client`` and nothing of ours above the floor. The layers
that know what happened call the small ``count_*``/``note_*`` functions here; the database
gauges (outbox depth, list health) are a collector of ``store.gauges``, read at scrape time.

The metrics live in :data:`REGISTRY`, not the library's global one. One process serves them with
:func:`start_listener`. With several delivery processes (``processes`` > 1), the parent calls
:func:`enable_multiprocess` before it starts any child, each child calls :func:`child_init`
with the directory first thing, the parent calls :func:`child_exited` as each one ends, and the
parent's listener serves a ``MultiProcessCollector`` over that directory (its own values
included, whether the listener started before or after); :func:`end_multiprocess` removes it at
exit. What a process counted before it switched to the directory is carried over into it.
``delivery/processes.py`` makes the directory with :func:`multiprocess_directory` (once per
process; ``cli/_metrics.py`` removes it when the listener closes, or else at exit).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, values
from prometheus_client.core import Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from weekly_mailer.config import split_host_port
from weekly_mailer.errors import ConfigError

REGISTRY = CollectorRegistry(auto_describe=True)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

MESSAGES = Counter(
    "weekly_mailer_messages",
    "Outbox results written to the ledger, by kind (issue, confirmation), outcome (sent, "
    "deferred, failed, skipped) and the failure's class (hard, soft, block, expired, unknown; "
    'none when it did not fail). rate() of outcome="sent" is the send rate.',
    ["kind", "outcome", "bounce_class"],
    registry=REGISTRY,
)
SMTP_REPLIES = Counter(
    "weekly_mailer_smtp_replies",
    "SMTP reply codes of delivery attempts written to the ledger (none: no reply, e.g. a "
    "dropped connection).",
    ["code"],
    registry=REGISTRY,
)
WEB_REQUESTS = Counter(
    "weekly_mailer_web_requests",
    "Web requests answered, by route (the URL rule, not the path), method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
SCHEDULER_NEXT_FIRE = Gauge(
    "weekly_mailer_scheduler_next_fire_timestamp_seconds",
    "When the weekly send fires next (unix time).",
    registry=REGISTRY,
    multiprocess_mode="max",
)
SCHEDULER_LAST_RUN = Gauge(
    "weekly_mailer_scheduler_last_run_timestamp_seconds",
    "When the weekly job last looked at the most recent send time (unix time).",
    registry=REGISTRY,
    multiprocess_mode="max",
)
SCHEDULER_LAST_OUTCOME = Gauge(
    "weekly_mailer_scheduler_last_outcome",
    "1 for what the weekly job's last run did (nothing, catch_up, missed, standby, error), 0 for "
    "the others.",
    ["outcome"],
    registry=REGISTRY,
    multiprocess_mode="max",
)
SCHEDULER_LEADER = Gauge(
    "weekly_mailer_scheduler_leader",
    "1 while this daemon leads (runs the weekly send), 0 while it stands by.",
    registry=REGISTRY,
    multiprocess_mode="max",
)

JOB_OUTCOMES = ("nothing", "catch_up", "missed", "standby", "error")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
_OURS: tuple[Any, ...] = (
    MESSAGES,
    SMTP_REPLIES,
    WEB_REQUESTS,
    SCHEDULER_NEXT_FIRE,
    SCHEDULER_LAST_RUN,
    SCHEDULER_LAST_OUTCOME,
    SCHEDULER_LEADER,
)


# -- what the layers above report ---------------------------------------------------------------


def count_messages(kind: str, outcome: str, n: int = 1, *, bounce_class: str = "none") -> None:
    """``n`` ledger results of ``kind`` with ``outcome`` (see :data:`MESSAGES`)."""
    if n > 0:
        MESSAGES.labels(kind, outcome, bounce_class or "none").inc(n)


def count_reply(code: int | None) -> None:
    """One SMTP reply code written to the ledger."""
    SMTP_REPLIES.labels(str(code) if code is not None and 200 <= code <= 599 else "none").inc()


def count_request(route: str, method: str, status: int) -> None:
    """One web request answered; ``route`` is the URL rule (bounded), never the raw path."""
    verb = method.upper() if method.upper() in HTTP_METHODS else "other"
    WEB_REQUESTS.labels(route, verb, str(status)).inc()


def note_job(outcome: str, *, at: float, next_fire: float | None, leader: bool | None) -> None:
    """The weekly job ran at ``at`` (unix time) and did ``outcome``. The run's time is set
    last: a scrape that sees it sees the outcome, the next fire time and the leadership too."""
    for name in JOB_OUTCOMES:
        SCHEDULER_LAST_OUTCOME.labels(name).set(1 if name == outcome else 0)
    if next_fire is not None:
        SCHEDULER_NEXT_FIRE.set(next_fire)
    if leader is not None:
        SCHEDULER_LEADER.set(1 if leader else 0)
    SCHEDULER_LAST_RUN.set(at)


# -- several processes ------------------------------------------------------------------------


_DIRECTORY: list[str] = []  # the directory multiprocess_directory made in this process


def _use_files(directory: str) -> None:
    """Make every metric of this process write to ``directory`` from now on, carrying over
    what it holds so far (a ``send``'s skipped copies, counted before its children start)."""
    so_far = [(metric, _values(metric)) for metric in _OURS]
    os.environ[MULTIPROC_ENV] = directory
    # The library picks its value class once, at import: pick again, now that files are wanted.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    for metric, held in so_far:
        if metric._labelnames:
            metric.clear()  # children made so far hold in-memory values
        else:
            metric._metric_init()
        for labels, number in held.items():
            child = metric.labels(*labels) if labels else metric
            if isinstance(metric, Counter):
                child.inc(number)
            else:
                child.set(number)


def _values(metric: Any) -> dict[tuple[str, ...], float]:
    """A metric's values in this process, by label values (``()``: no labels)."""
    if not metric._labelnames:
        number = float(metric._value.get())
        return {(): number} if number else {}
    with metric._lock:
        children = dict(metric._metrics)
    out = {labels: float(child._value.get()) for labels, child in children.items()}
    return {labels: number for labels, number in out.items() if number}


def enable_multiprocess() -> str:
    """In the parent, before any child starts: a private directory for every process's values
    (also the parent's own from now on). Returns it; pass it to :func:`child_init`."""
    directory = tempfile.mkdtemp(prefix="weekly-mailer-metrics-")
    _use_files(directory)
    return directory


def child_init(directory: str) -> None:
    """In a delivery child process, first thing (before it counts anything): write this
    process's metrics into the parent's ``directory`` (from :func:`enable_multiprocess`)."""
    _use_files(directory)


def child_exited(pid: int) -> None:
    """In the parent, when a child ends: drop its live gauges (its counters stay counted)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def end_multiprocess(directory: str) -> None:
    """In the parent at exit: remove the directory (what this process counts afterwards is
    held in memory again, from zero)."""
    if os.environ.get(MULTIPROC_ENV) == directory:
        del os.environ[MULTIPROC_ENV]
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        for metric in _OURS:
            if metric._labelnames:
                metric.clear()
            else:
                metric._metric_init()
    shutil.rmtree(directory, ignore_errors=True)
    if directory in _DIRECTORY:
        _DIRECTORY.remove(directory)


def multiprocess_directory() -> str:
    """The directory of this process's children (and its own values): made, with
    :func:`enable_multiprocess`, by the first call in this process; removed by
    :func:`end_owned` or, failing that, at exit."""
    if not _DIRECTORY:
        directory = enable_multiprocess()
        _DIRECTORY.append(directory)
        atexit.register(end_multiprocess, directory)
    return _DIRECTORY[0]


def end_owned() -> None:
    """Remove the directory :func:`multiprocess_directory` made, if any (the listener's close:
    its children have ended, the last scrape is done)."""
    for directory in list(_DIRECTORY):
        end_multiprocess(directory)


# -- the listener -----------------------------------------------------------------------------


class _Scraped(Collector):
    """Collected last in every scrape: tells :meth:`Listener.wait_for_scrape` one finished."""

    def __init__(self) -> None:
        self.done = threading.Event()

    def collect(self) -> Iterable[Metric]:
        self.done.set()
        return iter(())

    def describe(self) -> Iterable[Metric]:
        return iter(())


class _Ours(Collector):
    """This process's metrics; once :func:`enable_multiprocess` ran (before or after the
    listener started), every process's, summed from the directory."""

    def collect(self) -> Iterable[Metric]:
        directory = os.environ.get(MULTIPROC_ENV)
        if directory and os.path.isdir(directory):
            collector = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
            return collector.collect()  # type: ignore[no-untyped-call, no-any-return]
        return REGISTRY.collect()

    def describe(self) -> Iterable[Metric]:
        return iter(())


class Listener:
    """The metrics HTTP server of one process (``GET /metrics``), in a daemon thread."""

    def __init__(self, server: Any, thread: threading.Thread, scraped: _Scraped) -> None:
        self._server = server
        self._thread = thread
        self._scraped = scraped

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def wait_for_scrape(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a scrape that starts from now on."""
        self._scraped.done.clear()
        return self._scraped.done.wait(timeout)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def start_listener(address: str, extra: Iterable[Collector] = ()) -> Listener:
    """Serve the metrics on ``address`` (``host:port``): this process's (or every process's),
    then ``extra`` collectors (the database gauges). A port that cannot be bound is a
    :class:`ConfigError` naming ``metrics_address``."""
    host, port = split_host_port("metrics_address", address)
    registry = CollectorRegistry(auto_describe=False)
    scraped = _Scraped()
    for collector in (_Ours(), *extra, scraped):
        registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"metrics_address: cannot listen on {address}: {reason}") from exc
    return Listener(server, thread, scraped)
