"""The worker's batched path, for a backend with ``submit_batch`` (the pipelined SMTP engine).

Claimed rows go out in chunks: while one chunk is on the wire, the next is personalised and
signed, and up to ``WINDOW`` chunks are in flight at once, so the connections never wait for the
renderer nor the renderer for the slowest connection. The results of a chunk are settled in
order (``Worker.settle``: the same failure mapping, breaker and pauses as one message at a
time) and written in batches (``Worker.record``). When the claimed rows run low a new claim is
made while the last chunks are still on the wire.

Before a chunk goes on the wire the worker's fence is asked (``Worker.fenced``: the leases,
renewed first when they are about to run out); the rows it no longer holds go back under the
fence, unsent, and the engine asks again before each message (``base.Fence``). Each acceptance
goes to the worker's journal as its reply arrives (``base.Receipts``, ``journal.py``).

Results are written every ``RECORD_CHUNKS`` chunks or ``flush_seconds``, whichever comes first
(one transaction each: fewer, larger writes keep several processes from queueing for SQLite's
lock). So at most ``unrecorded_bound`` messages are accepted by the server and not yet
recorded at any moment; the journal holds them, so a SIGKILL resends only what was accepted
and not yet journaled (a message per connection at most). When a write fails (the database
is gone) no new chunk starts, the chunks in flight are waited for (their acceptances are in
the journal) and the error is raised.

A stop (SIGTERM, Ctrl-C) starts no new chunk: the chunks in flight finish and are recorded, the
rest goes back to the queue. A second Ctrl-C cuts the connections (``abort``): results already
back are recorded, the rest of the rows in flight are handed back.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import datetime as dt
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from weekly_mailer.delivery.backends.base import BatchBackend, BatchResult, Envelope, SendResult
from weekly_mailer.errors import ConfigError, DeliveryError, WeeklyMailerError
from weekly_mailer.store.models import DeliveryStatus
from weekly_mailer.store.outbox import ClaimedRow, Outcome

if TYPE_CHECKING:
    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.journal import Journal
    from weekly_mailer.delivery.leases import Leases
    from weekly_mailer.delivery.ratelimit import SlowDown, ThrottleGate, TokenBucket

WINDOW = 2  # chunks on the wire at once
RECORD_CHUNKS = 4  # results are written every this many chunks (or flush_seconds)
RECORD_QUEUE = 1  # batches of results waiting for the recording thread (besides the one it writes)
START_PER_CONNECTION = 2  # messages per connection in a first chunk, and after any failure
MAX_PER_CONNECTION = 32  # ... and after a run of chunks the server took whole
Flight = tuple[list[ClaimedRow], "concurrent.futures.Future[list[BatchResult]]"]


class BatchWorker(Protocol):
    """What the batched path needs of the worker (see ``worker.Worker``)."""

    settings: Settings
    stop: threading.Event
    hurry: threading.Event
    gate: ThrottleGate
    bucket: TokenBucket
    slowdown: SlowDown
    flush_every: int
    flush_seconds: float
    clock: Callable[[], dt.datetime]
    leases: Leases
    journal: Journal | None

    def may_start(self) -> bool: ...

    def fenced(self, rows: list[ClaimedRow]) -> list[ClaimedRow]: ...

    def accepted(self, envelope: Envelope, result: SendResult) -> None: ...

    def render(self, row: ClaimedRow) -> Envelope: ...

    def fail_setup(self, exc: ConfigError) -> None: ...

    def settle(
        self, row: ClaimedRow, result: SendResult | BaseException, *, at: dt.datetime | None = None
    ) -> Outcome: ...

    def record(self, outcomes: list[Outcome]) -> None: ...


def unrecorded_bound(settings: Settings) -> int:
    """The most messages one process can have had accepted and not yet recorded: the chunks on
    the wire, the results gathering for the next write, those waiting for the recording thread
    and those it is writing."""
    return ((2 + RECORD_QUEUE) * RECORD_CHUNKS + WINDOW) * chunk_size(settings)


def chunk_size(settings: Settings, per_connection: int = MAX_PER_CONNECTION) -> int:
    """Messages per chunk: ``per_connection`` per connection (at most: chunks start at
    ``START_PER_CONNECTION``); with ``send_rate``, what half a second allows."""
    size = per_connection * settings.concurrency
    if settings.send_rate > 0:
        size = min(size, max(1, int(settings.send_rate / 2)))
    return size


def claim_size(settings: Settings, chunk: int | None = None) -> int:
    """Rows a claim of the batched path takes: ``batch_size``, or enough to fill the window
    with chunks of the current size (``chunk``, by default a first chunk's) when that is more.
    A claim costs a few milliseconds whatever its size and chunks are cut from one claim, so a
    small claim would cap them; claims grow with the chunks and shrink with them after a
    failure, so a refusing server meets small claims too."""
    if chunk is None:
        chunk = first_chunk_size(settings)
    return max(settings.batch_size, WINDOW * chunk)


def first_chunk_size(settings: Settings) -> int:
    """The size of a first chunk, and of the chunk after any failure."""
    return chunk_size(settings, START_PER_CONNECTION)


def deliver_batched(
    worker: BatchWorker,
    backend: BatchBackend,
    rows: list[ClaimedRow],
    *,
    refill: Callable[[int], list[ClaimedRow]] | None = None,
) -> None:
    """Deliver ``rows`` (and, through ``refill``, further claims of at most the rows it is
    given) in overlapping chunks.

    Chunks start small and double after each chunk the server took whole, up to
    ``chunk_size``; any failure brings them back to ``first_chunk_size``, and with them how
    often results are written, so a refusing server meets small chunks and its refusals reach
    the breaker and the domain pause soon. Results are written by a thread of their own
    (``_Recorder``), in order; this returns once every result is written, and raises what a
    write raised."""
    recorder = _Recorder(worker.record)
    try:
        _deliver(worker, backend, rows, refill, recorder)
    finally:
        recorder.close()


def _drain(flights: collections.deque[Flight]) -> None:
    """After a failed write or claim: wait for the chunks on the wire, so nothing of theirs is
    still going out when the rows are folded from the journal or handed back."""
    for _chunk, future in flights:
        with contextlib.suppress(Exception):
            future.result()


def _deliver(
    worker: BatchWorker,
    backend: BatchBackend,
    rows: list[ClaimedRow],
    refill: Callable[[int], list[ClaimedRow]] | None,
    recorder: _Recorder,
) -> None:
    pending = collections.deque(rows)
    flights: collections.deque[Flight] = collections.deque()
    try:
        _loop(worker, backend, refill, recorder, pending, flights)
    except BaseException:
        _drain(flights)
        raise


def _loop(
    worker: BatchWorker,
    backend: BatchBackend,
    refill: Callable[[int], list[ClaimedRow]] | None,
    recorder: _Recorder,
    pending: collections.deque[ClaimedRow],
    flights: collections.deque[Flight],
) -> None:
    small, most = first_chunk_size(worker.settings), chunk_size(worker.settings)
    size = small
    outcomes: list[Outcome] = []
    last_flush = time.monotonic()
    every = max(worker.flush_every, RECORD_CHUNKS * size)
    fence, receipts = worker.leases, worker.journal
    while True:
        while len(flights) < WINDOW and worker.may_start():
            if not pending and refill is not None and flights:
                # Claim while the last chunks are on the wire, enough for chunks of this size.
                pending.extend(refill(claim_size(worker.settings, size)))
            if not pending:
                break
            chunk, envelopes, early = _prepare(worker, pending, size, wait=not flights)
            outcomes.extend(early)
            chunk, envelopes = _fence(worker, chunk, envelopes, outcomes)
            if not envelopes:
                if flights:
                    break  # the gate is closed: collect what is in flight first
                continue
            try:
                flights.append((chunk, backend.submit_batch(envelopes, fence=fence,
                                                           receipts=receipts)))  # fmt: skip
            except DeliveryError as exc:  # a closed backend
                outcomes.extend(worker.settle(row, exc) for row in chunk)
        if not flights:
            break
        chunk, future = flights[0]
        results = _wait(worker, future, len(chunk))
        if results is None:  # a second Ctrl-C
            backend.abort()
            outcomes.extend(_cut_short(flights))
            break
        flights.popleft()
        at = worker.clock()  # one answer time a chunk: see Worker.settle
        outcomes.extend(
            worker.settle(row, r, at=at) for row, r in zip(chunk, results, strict=True)
        )
        whole = all(isinstance(r, SendResult) for r in results)
        if not whole:
            size = small
        elif len(chunk) >= size:
            size = min(most, 2 * size)
        every = max(worker.flush_every, RECORD_CHUNKS * size)
        now = time.monotonic()
        if len(outcomes) >= every or now - last_flush >= worker.flush_seconds or not whole:
            recorder.put(outcomes)
            outcomes, last_flush = [], now
            if not whole:  # a refusal's pause must be written before the next claim or chunk
                recorder.wait()
    outcomes.extend(Outcome(row, DeliveryStatus.QUEUED.value) for row in pending)
    recorder.put(outcomes)


class _Recorder:
    """Writes batches of results in a thread of its own, one at a time and in order, so that
    the connections are fed while a write waits for SQLite's lock (another delivery process
    holds it) or for a commit. ``put`` waits while ``RECORD_QUEUE`` batches wait already: what
    is sent and not yet recorded stays bounded (``unrecorded_bound``). After a chunk with a
    failure the delivering thread waits for the write (``wait``): what a refusal means (a
    domain pause, a bounce) is in the database before the next claim. After a failed write
    the later batches are not written (as if this process had stopped there: their rows keep
    their leases) and ``put`` and ``close`` raise the error."""

    def __init__(self, record: Callable[[list[Outcome]], None]) -> None:
        self._record = record
        self._queue: queue.Queue[list[Outcome] | None] = queue.Queue(maxsize=RECORD_QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="record", daemon=True)
        self._thread.start()

    def put(self, outcomes: list[Outcome]) -> None:
        self._raise()
        if outcomes:
            self._queue.put(outcomes)

    def wait(self) -> None:
        """Wait until every batch given so far is written; raise what a write raised."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Wait until every batch given is written; raise what a write raised."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        failed = False
        while (batch := self._queue.get()) is not None:
            try:
                if not failed:
                    self._record(batch)
            except BaseException as exc:  # noqa: BLE001 - raised in the delivering thread
                self._error, failed = exc, True
            finally:
                self._queue.task_done()


def _fence(
    worker: BatchWorker,
    chunk: list[ClaimedRow],
    envelopes: list[Envelope],
    outcomes: list[Outcome],
) -> tuple[list[ClaimedRow], list[Envelope]]:
    """The chunk less the rows the worker no longer holds (``Worker.fenced``), which go back
    under the fence unsent."""
    if not chunk:
        return chunk, envelopes
    held = {r.delivery_id for r in worker.fenced(chunk)}
    if len(held) == len(chunk):
        return chunk, envelopes
    kept = [(r, e) for r, e in zip(chunk, envelopes, strict=True) if r.delivery_id in held]
    lost = (r for r in chunk if r.delivery_id not in held)
    outcomes.extend(Outcome(r, DeliveryStatus.QUEUED.value) for r in lost)
    return [r for r, _ in kept], [e for _, e in kept]


def _prepare(
    worker: BatchWorker, pending: collections.deque[ClaimedRow], size: int, *, wait: bool
) -> tuple[list[ClaimedRow], list[Envelope], list[Outcome]]:
    """The next chunk, personalised and signed; ``early`` holds the rows that cannot be
    composed. Without ``wait``, a closed throttle gate ends the chunk instead of waiting."""
    chunk: list[ClaimedRow] = []
    envelopes: list[Envelope] = []
    early: list[Outcome] = []
    stop, gate = worker.stop, worker.gate
    while pending and len(chunk) < size:
        if not wait and gate.remaining() > 0:
            break
        if not gate.wait(stop) or not worker.bucket.acquire(stop):
            break
        if not worker.slowdown.acquire(stop) or not worker.may_start():
            break
        row = pending.popleft()
        try:
            envelope = worker.render(row)
        except ConfigError as exc:  # a bad setup (e.g. DKIM) is not this recipient's problem
            worker.fail_setup(exc)
            pending.appendleft(row)
            break
        except WeeklyMailerError as exc:
            early.append(Outcome(row, DeliveryStatus.FAILED.value, error=f"cannot compose: {exc}"))
            continue
        chunk.append(row)
        envelopes.append(envelope)
    return chunk, envelopes, early


def _wait(
    worker: BatchWorker, future: concurrent.futures.Future[list[BatchResult]], n: int
) -> Sequence[BatchResult | BaseException] | None:
    """The chunk's ``n`` results (an unexpected error stands for each), or ``None`` on a
    hurry (a second Ctrl-C)."""
    while not worker.hurry.is_set():
        try:
            return future.result(timeout=0.1)
        except concurrent.futures.TimeoutError:
            continue
        except Exception as exc:  # noqa: BLE001 - settle() defers each row with it
            return [exc] * n
    return None


def _cut_short(flights: collections.deque[Flight]) -> list[Outcome]:
    """After ``abort``: what came back as sent is recorded; every other row in flight goes back
    to the queue (the rows of a chunk not back within a second stay leased: ``release``)."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + 1.0
    for chunk, future in flights:
        try:
            results = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - cut short: nothing is known of these
            continue
        for row, r in zip(chunk, results, strict=True):
            if isinstance(r, SendResult):
                outcomes.append(Outcome(row, DeliveryStatus.SENT.value, code=r.code))
            else:
                outcomes.append(Outcome(row, DeliveryStatus.QUEUED.value))
    return outcomes
