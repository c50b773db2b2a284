"""The delivery loop: claim → personalise → backend.send → record, until told to stop.

One loop for every message: issue copies and confirmation e-mails are rows of the same outbox,
with the same retries, failure mapping, bounce accounting and ledger (``results.py``).

The worker sees narrow interfaces: a sessionmaker (for the outbox functions), a ``Backend``, and a
``Renderers`` that turns a claimed row into an ``Envelope``. Results are written back in small
batches (every few messages or a fraction of a second), so a crash resends at most the messages
sent since the last write; a stop (SIGTERM) finishes the messages in flight, writes them, and
hands every other claimed row back to the queue.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

from weekly_mailer.clock import utcnow
from weekly_mailer.delivery.backends.base import (
    BackendBusyError,
    BackendUnavailableError,
    Envelope,
    SendHaltedError,
    SendResult,
)
from weekly_mailer.delivery.breaker import Breaker
from weekly_mailer.delivery.heartbeat import Heartbeat
from weekly_mailer.delivery.pipeline import BatchBackend, claim_size, deliver_batched
from weekly_mailer.delivery.policy import Stats, backoff, hard_throttle, hurry_for, make_owner
from weekly_mailer.delivery.ratelimit import SlowDown, ThrottleGate, TokenBucket
from weekly_mailer.delivery.results import PauseRule, counts_as_bounce, note_stale, write_outcomes
from weekly_mailer.delivery.threaded import deliver_threaded
from weekly_mailer.errors import (
    ConfigError,
    DeliveryError,
    PermanentFailure,
    TemporaryFailure,
    WeeklyMailerError,
)
from weekly_mailer.store import outbox
from weekly_mailer.store.models import DeliveryStatus
from weekly_mailer.store.outbox import ClaimedRow, Outcome

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend

log = logging.getLogger(__name__)

IDLE_FIRST_PAUSE = 0.05  # until idle: the first look again after finding nothing to claim

__all__ = ["Renderers", "Stats", "Worker", "backoff", "hard_throttle", "hurry_for", "make_owner"]

RenderFn = Callable[[ClaimedRow], Envelope]
STALE_CHECK_SECONDS = 30.0  # stale rows are looked for at a run's first claim, then this often


class Renderers(Protocol):
    """Gives the personalising function of an issue (loaded once per issue), and the function
    that builds a confirmation e-mail (loaded once)."""

    def for_issue(self, issue_id: int) -> RenderFn: ...

    def for_confirmations(self) -> RenderFn: ...


class Worker:
    """Runs the delivery loop for one issue (``issue_id``), or for every sending issue and every
    confirmation e-mail, or (``kind``) for one kind of rows only. ``wake()`` cuts a wait short:
    a new row was committed."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        backend: Backend,
        renderers: Renderers,
        *,
        issue_id: int | None = None,
        kind: str | None = None,
        owner: str | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        on_progress: Callable[[Stats], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.backend = backend
        # The batched path (pipeline.py) for a backend that takes chunks; its first claim fills
        # the window with first chunks when that is more than batch_size.
        self._batch_backend = (
            cast(BatchBackend, backend)
            if callable(getattr(backend, "submit_batch", None))
            else None
        )
        self._first_claim = (
            settings.batch_size if self._batch_backend is None else claim_size(settings)
        )
        self.renderers = renderers
        self.issue_id = issue_id
        self.kind = kind
        self.woken = threading.Event()
        self.owner = owner or make_owner()
        self.stop = stop or threading.Event()
        self.clock = clock
        self.on_progress = on_progress
        self.stats = Stats()
        self.bucket = TokenBucket(settings.send_rate, burst=max(1.0, settings.concurrency))
        self.gate = ThrottleGate()
        self.slowdown = SlowDown(
            settings.throttle_pause_seconds,
            send_rate=settings.send_rate,
            fallback_rate=2.0 * settings.concurrency,
        )
        self.hurry = hurry_for(self.stop)
        self.breaker = Breaker(20)  # identical 5xx replies in a row that stop the send
        self.busy_limit = 5  # busy greetings in a row (no message accepted) that stop it
        self._lock = threading.Lock()
        self._busy = 0
        self.flush_every = max(4, 2 * settings.concurrency)
        self.flush_seconds = 0.25
        self._renders: dict[int, RenderFn] = {}
        self._confirm_render: RenderFn | None = None
        self._unavailable: WeeklyMailerError | None = None  # stops this run (outage, config)
        self._lease_at = 0.0  # when our leases were last set (monotonic)
        self._stale_at = -STALE_CHECK_SECONDS  # when stale rows were last failed (monotonic)

    # -- the loop ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for due rows now rather than at the next poll (a row was just committed)."""
        self.woken.set()

    def pause(self, seconds: float) -> None:
        """Wait up to ``seconds``; a stop, or :meth:`wake`, ends the wait early."""
        end = time.monotonic() + seconds
        while not self.stop.is_set() and not self.hurry.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            # Wait on the wake-up itself: a row committed now is claimed now, not up to 50 ms
            # later (serve's sign-up answers are padded to 50 ms; the confirmation's work
            # should be done inside that wait). A stop is still seen within 50 ms.
            if self.woken.wait(min(left, 0.05)):
                self.woken.clear()
                return

    def run(self, *, until_idle: bool = True, max_wait: float = 60.0, poll: float = 1.0) -> Stats:
        """Deliver until stopped; with ``until_idle``, also until nothing is due within
        ``max_wait`` seconds (deferred rows due later are left for a later run).

        Raises ``BackendUnavailableError`` (outage, refused sender), ``SendHaltedError`` or
        ``ConfigError`` after handing every claimed row back; the same worker can run again.
        """
        self._unavailable = None  # a past outage is over as far as this run knows
        self._stale_at = -STALE_CHECK_SECONDS  # a run starts by failing the stale rows
        self._busy = 0
        self.breaker.reset()
        beat = Heartbeat(self.sessions, self.settings, owner=self.owner, clock=self.clock).start()
        idle = IDLE_FIRST_PAUSE
        try:
            while not self.stop.is_set() and not self.hurry.is_set():
                self.woken.clear()  # whatever was committed before this claim, it will see
                rows = self._claim()
                if rows:
                    self._deliver(rows)
                    if self._unavailable is not None:
                        raise self._unavailable
                    idle = IDLE_FIRST_PAUSE
                    continue
                with self.sessions.begin() as session:
                    ids = [self.issue_id] if self.issue_id is not None else []
                    outbox.finish_done(session, now=self.clock(), issue_ids=ids)
                    due = outbox.next_due(session, issue_id=self.issue_id, kind=self.kind)
                if due is None:
                    if until_idle:
                        break
                    self.pause(poll)
                    continue
                delay = (due - self.clock()).total_seconds()
                if until_idle and delay > max_wait:
                    break
                # Until idle, what is due next is mostly the last rows another process is
                # sending (their lease): look again soon, then less and less often.
                self.pause(min(max(delay, 0.02), idle if until_idle else poll, poll))
                idle = min(2 * idle, poll)
        finally:
            beat.close()  # renews nothing from here on: the rows are handed back below
            self.breaker.end_run()
            if self.breaker.has_bounces():
                self._record([])  # the bounces of a streak the breaker did not stop
            with self.sessions.begin() as session:
                self.stats.released += outbox.release(session, owner=self.owner)
        return self.stats

    def _claim(self, limit: int | None = None) -> list[ClaimedRow]:
        limit = self._first_claim if limit is None else limit
        if self.settings.send_rate > 0:  # a batch must be sent well within its lease
            by_rate = int(self.settings.send_rate * self.settings.lease_seconds / 2)
            limit = max(1, min(limit, by_rate))
        with self.sessions.begin() as session:
            stale_rows = []
            if time.monotonic() - self._stale_at >= STALE_CHECK_SECONDS:
                stale_rows = outbox.fail_stale_rows(
                    session,
                    now=self.clock(),
                    max_age=dt.timedelta(hours=self.settings.retry_give_up_hours),
                    issue_id=self.issue_id,
                    kind=self.kind,
                )
                note_stale(session, stale_rows, now=self.clock())
                self._stale_at = time.monotonic()
            rows, skipped = outbox.claim(
                session,
                owner=self.owner,
                now=self.clock(),
                lease_seconds=self.settings.lease_seconds,
                limit=limit,
                issue_id=self.issue_id,
                kind=self.kind,
            )
        self._lease_at = time.monotonic()
        stale = len(stale_rows)
        if stale:
            log.warning("%d deliveries older than retry_give_up_hours failed as stale", stale)
            self.stats.stale += stale
            self.stats.failed += stale
        if skipped or stale:
            self.stats.skipped += skipped
            self._progress()
        return rows

    def _load(self, rows: list[ClaimedRow]) -> None:
        for issue_id in {r.issue_id for r in rows if r.issue_id is not None} - set(self._renders):
            try:  # load each issue once, here, rather than racing for it in the pool
                self._renders[issue_id] = self.renderers.for_issue(issue_id)
            except ConfigError as exc:
                self._unavailable = exc
            except WeeklyMailerError:
                pass  # each row records the error as it is attempted
        if self._confirm_render is None and any(r.issue_id is None for r in rows):
            try:
                self._confirm_render = self.renderers.for_confirmations()
            except ConfigError as exc:
                self._unavailable = exc

    def _refill(self, limit: int) -> list[ClaimedRow]:
        """The next claim of at most ``limit`` rows, made while the last chunks are on the wire
        (the batched path)."""
        if self.stop.is_set() or self._unavailable is not None or self.breaker.tripped:
            return []
        rows = self._claim(limit)
        self._load(rows)
        return rows

    def _deliver(self, rows: list[ClaimedRow]) -> None:
        self._load(rows)
        if self._batch_backend is not None:
            deliver_batched(self, self._batch_backend, rows, refill=self._refill)
            return
        deliver_threaded(self, self.backend, rows)  # one message at a time per connection

    def _may_start(self) -> bool:
        return not self.stop.is_set() and self._unavailable is None

    # What the batched path (pipeline.py) calls.
    may_start = _may_start

    def render(self, row: ClaimedRow) -> Envelope:
        return self._render(row)

    def fail_setup(self, exc: ConfigError) -> None:
        self._unavailable = exc

    def record(self, outcomes: list[Outcome]) -> None:
        self._record(outcomes)

    def halt(self, reason: str) -> None:
        """Stop as if this worker's breaker had tripped (another delivery process's did):
        ``run`` raises ``SendHaltedError`` and no bounce of the held streak counts."""
        self.breaker.trip(reason)
        with self._lock:
            if self._unavailable is None:
                self._unavailable = SendHaltedError(reason)

    # -- results of attempts, whichever path made them -----------------------------------------

    def settle(
        self, row: ClaimedRow, result: SendResult | BaseException, *, at: dt.datetime | None = None
    ) -> Outcome:
        """The outcome of one attempt from what the backend returned or raised, with what it
        means for the whole send (pauses, the breaker, an outage). Both paths use it. ``at``:
        when the server answered (the batched path reads the clock once a chunk, so a chunk's
        copies share their ``sent_at`` and are recorded by one statement); by default now."""
        if isinstance(result, SendResult):
            self._note_refusal(row, None)
            with self._lock:
                self._busy = 0
            return Outcome(
                row, DeliveryStatus.SENT.value, code=result.code, at=at or self.clock()
            )
        exc = result
        if isinstance(exc, BackendBusyError):
            self._note_busy(exc)
            return Outcome(row, DeliveryStatus.QUEUED.value)
        if isinstance(exc, BackendUnavailableError):
            self._unavailable = exc
            return Outcome(row, DeliveryStatus.QUEUED.value)
        if isinstance(exc, PermanentFailure):  # its bounce is counted by the breaker, or dropped
            self._note_refusal(row, exc, bounce=counts_as_bounce(exc))
            return Outcome(row, DeliveryStatus.FAILED.value, code=exc.code, error=str(exc))
        if isinstance(exc, TemporaryFailure):
            self._note_refusal(row, None)
            if exc.throttle and hard_throttle(exc):
                self.gate.pause(self.settings.throttle_pause_seconds)
            elif exc.throttle:
                self.slowdown.note()
            return self._deferred(row, exc)
        if isinstance(exc, DeliveryError):
            self._note_refusal(row, None)
            return self._deferred(row, exc)
        log.error("the backend raised an unexpected error for %s", row.email, exc_info=exc)
        error = DeliveryError(f"backend error: {type(exc).__name__}: {exc}")
        return self._deferred(row, error)

    def _note_refusal(
        self, row: ClaimedRow, exc: PermanentFailure | None, *, bounce: bool = False
    ) -> None:
        """The circuit breaker (``breaker.py``): the same 5xx for its limit of recipients in a
        row stops the send, and the bounces of that streak are not counted."""
        reply = None if exc is None else str(exc).replace(row.email, "<recipient>")
        if self.breaker.note(reply, subscriber_id=row.subscriber_id, bounce=bounce):
            with self._lock:
                if self._unavailable is None:
                    self._unavailable = SendHaltedError(self.breaker.tripped or "")

    def _note_busy(self, exc: BackendBusyError) -> None:
        self.gate.pause(self.settings.throttle_pause_seconds)
        with self._lock:
            self._busy += 1
            if self._busy >= self.busy_limit and self._unavailable is None:
                self._unavailable = BackendUnavailableError(
                    f"{exc} ({self._busy} times in a row, nothing accepted meanwhile)"
                )

    def _deferred(self, row: ClaimedRow, exc: DeliveryError) -> Outcome:
        now = self.clock()
        first = row.first_failure_at or now
        give_up = dt.timedelta(hours=self.settings.retry_give_up_hours)
        if now - first >= give_up:
            return Outcome(
                row,
                DeliveryStatus.FAILED.value,
                code=exc.code,
                error=f"gave up after {row.attempts + 1} attempts: {exc}",
            )
        delay = backoff(self.settings, row.attempts + 1)
        return Outcome(
            row,
            DeliveryStatus.DEFERRED.value,
            code=exc.code,
            error=str(exc),
            next_attempt_at=now + dt.timedelta(seconds=delay),
            at=now,
        )

    def _render(self, row: ClaimedRow) -> Envelope:
        if row.issue_id is None:  # a confirmation e-mail
            if self._confirm_render is None:
                self._confirm_render = self.renderers.for_confirmations()
            return self._confirm_render(row)
        fn = self._renders.get(row.issue_id)
        if fn is None:
            fn = self._renders[row.issue_id] = self.renderers.for_issue(row.issue_id)
        return fn(row)

    # -- results -------------------------------------------------------------------------------

    def _record(self, outcomes: list[Outcome]) -> None:
        now = self.clock()
        bounces = self.breaker.take_bounces()
        with self.sessions.begin() as session:
            limit = self.settings.bounce_limit
            write_outcomes(
                session, outcomes, owner=self.owner, bounce_limit=limit, now=now, bounces=bounces,
                pause=PauseRule.of(self.settings),
            )
            if time.monotonic() - self._lease_at > self.settings.lease_seconds / 4:
                outbox.extend_lease(
                    session, owner=self.owner, now=now, lease_seconds=self.settings.lease_seconds
                )
                self._lease_at = time.monotonic()
        for o in outcomes:
            if o.status == DeliveryStatus.SENT.value:
                self.stats.sent += 1
            elif o.status == DeliveryStatus.DEFERRED.value:
                self.stats.deferred += 1
            elif o.status == DeliveryStatus.FAILED.value:
                self.stats.failed += 1
                log.debug("failed: %s: %s", o.row.email, o.error)
            else:
                self.stats.released += 1
        self.stats.throttled = self.gate.pauses
        self.stats.slowed = self.slowdown.slowdowns
        if outcomes:
            self._progress()

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.stats)
