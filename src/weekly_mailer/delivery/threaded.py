"""The worker's one-message-at-a-time path, for backends without ``submit_batch`` (``smtplib``'s
engine, ``file://``, ``console://``, ``memory://``, third-party ones): a pool of
``concurrency`` threads, each attempting one message (pace, render, ``backend.send``, settle),
the results written every ``flush_every`` messages or ``flush_seconds``. A stop starts no new
message; a second Ctrl-C stops waiting for the slow ones (``abort`` when the backend has it)
and leaves their rows leased for ``release``. The fence (``Worker.fenced``) is asked before each
message, and each acceptance goes to the journal as ``send`` returns (``Worker.accepted``).
A failed write waits for the messages in flight before it is raised."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from weekly_mailer.errors import ConfigError, WeeklyMailerError
from weekly_mailer.store.models import DeliveryStatus
from weekly_mailer.store.outbox import ClaimedRow, Outcome

if TYPE_CHECKING:
    from weekly_mailer.delivery.backends.base import Backend
    from weekly_mailer.delivery.pipeline import BatchWorker


def deliver_threaded(worker: BatchWorker, backend: Backend, rows: list[ClaimedRow]) -> None:
    """Attempt ``rows``, ``concurrency`` at a time, and record the results in batches."""
    concurrency = worker.settings.concurrency
    pending = iter(rows)
    outcomes: list[Outcome] = []
    in_flight: set[Future[Outcome]] = set()
    last_flush = time.monotonic()
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="send")
    try:
        while True:
            while len(in_flight) < concurrency and worker.may_start():
                row = next(pending, None)
                if row is None:
                    break
                in_flight.add(pool.submit(_attempt, worker, backend, row))
            if not in_flight:
                break
            if worker.hurry.is_set():  # a second Ctrl-C: stop waiting for the slow ones
                abort = getattr(backend, "abort", None)
                if callable(abort):
                    abort()
                break  # their rows stay leased to us; release() hands them back
            done, in_flight = wait(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
            outcomes.extend(f.result() for f in done)
            now = time.monotonic()
            if len(outcomes) >= worker.flush_every or now - last_flush >= worker.flush_seconds:
                try:
                    worker.record(outcomes)
                except BaseException:
                    wait(in_flight)  # their acceptances are in the journal: let them end
                    raise
                outcomes, last_flush = [], now
    finally:
        pool.shutdown(wait=not worker.hurry.is_set(), cancel_futures=True)
    outcomes.extend(Outcome(row, DeliveryStatus.QUEUED.value) for row in pending)
    worker.record(outcomes)


def _attempt(worker: BatchWorker, backend: Backend, row: ClaimedRow) -> Outcome:
    """One message, in a pool thread."""
    untried = Outcome(row, DeliveryStatus.QUEUED.value)
    stop = worker.stop
    if not worker.may_start() or not worker.gate.wait(stop):
        return untried
    if not worker.bucket.acquire(stop) or not worker.slowdown.acquire(stop):
        return untried
    if not worker.gate.wait(stop) or not worker.may_start():
        return untried
    try:
        envelope = worker.render(row)
    except ConfigError as exc:  # a bad setup (e.g. DKIM) is not this recipient's problem
        worker.fail_setup(exc)
        return untried
    except WeeklyMailerError as exc:
        return Outcome(row, DeliveryStatus.FAILED.value, error=f"cannot compose: {exc}")
    if not worker.fenced([row]) or not worker.leases.holds(envelope):
        return untried  # no longer ours: back under the fence, unsent
    try:
        result = backend.send(envelope)
    except Exception as exc:  # noqa: BLE001 - settle() maps it (a buggy backend too)
        return worker.settle(row, exc)
    worker.accepted(envelope, result)  # into the journal before anything else
    return worker.settle(row, result)
