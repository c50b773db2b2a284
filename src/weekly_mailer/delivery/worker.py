"""The delivery loop: claim → personalise → backend.send → record, until told to stop.

One loop for every message: issue copies and confirmation e-mails are rows of the same outbox,
with the same retries, failure mapping, bounce accounting and ledger (``results.py``).

The worker sees narrow interfaces: an ``Outbox`` (``ports.py``; ``store.outbox.SqlOutbox`` on a
sessionmaker), a ``Backend`` (a ``BatchBackend`` or not, decided once, here), and a
``Renderers`` that turns a claimed row into an ``Envelope``. Its leases are a fence
(``leases.py``, renewed by the heartbeat alone): a row goes on the wire only while it is held.
Every acceptance goes to the journal the moment it arrives (``journal.py``) and results are
written back in batches, so a SIGKILL resends at most the message per connection whose reply
was being read; a stop (SIGTERM) finishes the messages in flight, writes them, and hands every
other claimed row back to the queue. Outages are the runner's (``runner.py``): the worker
raises ``DatabaseUnavailableError`` and can run again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from weekly_mailer.clock import utcnow
from weekly_mailer.delivery.attempts import Settling
from weekly_mailer.delivery.backends.base import (
    BatchBackend,
    Envelope,
    SendHaltedError,
    SendResult,
)
from weekly_mailer.delivery.breaker import Breaker
from weekly_mailer.delivery.heartbeat import Heartbeat
from weekly_mailer.delivery.journal import (
    CLEAR_AT,
    Journal,
    accepted_elsewhere,
    fold,
    journal_dir,
)
from weekly_mailer.delivery.leases import Leases
from weekly_mailer.delivery.pipeline import claim_size, deliver_batched
from weekly_mailer.delivery.policy import Stats, backoff, hard_throttle, hurry_for, make_owner
from weekly_mailer.delivery.ratelimit import SlowDown, ThrottleGate, TokenBucket
from weekly_mailer.delivery.results import ResultEffects
from weekly_mailer.delivery.threaded import deliver_threaded
from weekly_mailer.errors import ConfigError, DatabaseUnavailableError, WeeklyMailerError
from weekly_mailer.store.models import DeliveryStatus
from weekly_mailer.store.outbox import ClaimedRow, Outcome
from weekly_mailer.store.outbox.pacing import Pace
from weekly_mailer.store.outbox.port import SqlOutbox

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend
    from weekly_mailer.delivery.ports import Outbox, Renderers, RenderFn

log = logging.getLogger(__name__)

IDLE_FIRST_PAUSE = 0.05  # until idle: the first look again after finding nothing to claim

__all__ = ["Stats", "Worker", "backoff", "hard_throttle", "hurry_for", "make_owner"]

STALE_CHECK_SECONDS = 30.0  # stale rows are looked for at a run's first claim, then this often


class Worker(Settling):
    """Runs the delivery loop for one issue (``issue_id``), or for every sending issue and every
    confirmation e-mail, or (``kind``) for one kind of rows only. ``wake()`` cuts a wait short:
    a new row was committed. ``outbox``: the outbox port (by default ``SqlOutbox`` on
    ``sessions``)."""

    def __init__(
        self,
        sessions: sessionmaker[Session] | None,
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
        outbox: Outbox | None = None,
        journal: bool = True,
    ) -> None:
        self.settings = settings
        self.backend = backend
        # Decided once: the batched path (pipeline.py) for a backend that takes chunks; its
        # first claim fills the window with first chunks when that is more than batch_size.
        self._batch_backend = backend if isinstance(backend, BatchBackend) else None
        self._first_claim = (
            settings.batch_size if self._batch_backend is None else claim_size(settings)
        )
        self.renderers = renderers
        self.issue_id = issue_id
        self.kind = kind
        self.woken = threading.Event()
        self.owner = owner or make_owner()
        if outbox is None:
            assert sessions is not None, "a Worker needs sessions or an outbox"
            outbox = SqlOutbox(
                sessions, owner=self.owner, lease_seconds=settings.lease_seconds,
                effects=ResultEffects(settings), issue_id=issue_id, kind=kind,
                pace=Pace.of(settings), clock=clock,
            )  # fmt: skip
        self.outbox = outbox
        self.leases = Leases(settings.lease_seconds)
        self.fence_ahead = min(5.0, settings.lease_seconds / 4)  # renew first if less is left
        self.journal_dir = journal_dir(settings) if journal else None
        self.journal: Journal | None = None
        self._kept: Journal | None = None  # over an outage: its acceptances are not recorded
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
        self._stale_at = -STALE_CHECK_SECONDS  # when stale rows were last failed (monotonic)
        self._beat: Heartbeat | None = None

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

        Raises ``BackendUnavailableError`` (outage, refused sender), ``SendHaltedError``,
        ``ConfigError`` or ``DatabaseUnavailableError`` after handing every claimed row back
        (when the database lets it); the same worker can run again.
        """
        self._unavailable = None  # a past outage is over as far as this run knows
        self._stale_at = -STALE_CHECK_SECONDS  # a run starts by failing the stale rows
        self._busy = 0
        self.breaker.reset()
        self.leases.clear()
        self._open_journal()
        self._beat = beat = Heartbeat(self.outbox, self.leases, clock=self.clock).start()
        idle = IDLE_FIRST_PAUSE
        clean = outage = False
        try:
            while not self.stop.is_set() and not self.hurry.is_set():
                self.woken.clear()  # whatever was committed before this claim, it will see
                rows = self._claim()
                if rows:
                    self._deliver(rows)
                    if self.journal is not None:  # every acceptance in it is recorded now
                        self.journal.clear(at_least=CLEAR_AT, held=self.leases.tokens())
                    if self._unavailable is not None:
                        raise self._unavailable
                    idle = IDLE_FIRST_PAUSE
                    continue
                for issue_id in self.outbox.finish(now=self.clock()):
                    self._finished(issue_id)
                due = self.outbox.next_due()
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
            clean = True
        except DatabaseUnavailableError:
            outage = True
            raise
        finally:
            beat.close()  # renews nothing from here on: the rows are handed back below
            self.breaker.end_run()
            self._hand_back(clean=clean, outage=outage)
        return self.stats

    def recover(self) -> None:
        """After an outage, before running again: what the journal kept over it holds is
        recorded ``sent`` (counted in this worker's figures: it sent them), and every row
        still held under this worker's name is handed back (nothing of it is on the wire).
        It writes whatever there is to do, so it is also the probe: it raises
        ``DatabaseUnavailableError`` while the database is still away, the journal kept."""
        if self._kept is not None:
            self.stats.sent += self._kept.fold_own(self.outbox.accept)
            self._kept.close(remove=True)
            self._kept = None
        self.stats.released += self.outbox.release()

    def _finished(self, issue_id: int) -> None:
        """An issue with nothing left to send: one line in the log (the daemon's record)."""
        n = self.outbox.counts(issue_id)
        log.info(
            "delivery of issue #%d finished: %d sent, %d failed, %d skipped", issue_id,
            n.get("sent", 0), n.get("failed", 0), n.get("skipped", 0),
        )  # fmt: skip

    def _open_journal(self) -> None:
        """This run's journal, after folding those no live worker holds (see ``journal.py``)."""
        if self._kept is not None:
            self.recover()  # an outage's journal first (ride_out does it, as its probe)
        if self.journal_dir is None or self.journal is not None:
            return
        fold(self.journal_dir, self.outbox.accept, release=self.outbox.hand_back)
        try:
            self.journal = Journal(self.journal_dir, self.owner)
        except OSError as exc:  # a full disk, a folder we may not write: deliver without it
            log.warning("no journal in %s (%s): a kill may resend more", self.journal_dir, exc)

    def _hand_back(self, *, clean: bool, outage: bool = False) -> None:
        """At a run's end: the held bounces written, what the journal holds recorded, every
        row still held handed back. After an outage nothing is tried (each write would wait
        out the busy timeout or the connection again, and the outage be said that much
        later): the journal stays open and locked, its own, for ``recover``. When a write
        fails here what fails is left: the journal for the next fold, the rows to their
        leases."""
        journal, self.journal = self.journal, None
        if outage:
            self.leases.clear()
            if journal is not None:
                if self._kept is not None:  # cannot happen: recover() runs before a run
                    self._kept.close(remove=False)
                self._kept = journal
            return
        recorded = clean
        try:
            if self.breaker.has_bounces():
                self._record([])  # the bounces of a streak the breaker did not stop
            if journal is not None and not clean:
                self.stats.sent += journal.fold_own(self.outbox.accept)
            recorded = True
            self.stats.released += self.outbox.release()
        except DatabaseUnavailableError as exc:
            log.debug("could not hand the rows back (%s): they return when their leases end", exc)
            if clean:
                raise
        finally:
            self.leases.clear()
            if journal is not None:
                journal.close(remove=recorded)

    def _claim(self, limit: int | None = None) -> list[ClaimedRow]:
        limit = self._first_claim if limit is None else limit
        if self.settings.send_rate > 0:  # a batch must be sent well within its lease
            by_rate = int(self.settings.send_rate * self.settings.lease_seconds / 2)
            limit = max(1, min(limit, by_rate))
        stale_after = None
        if time.monotonic() - self._stale_at >= STALE_CHECK_SECONDS:
            stale_after = dt.timedelta(hours=self.settings.retry_give_up_hours)
        if self.journal_dir is not None:  # rows of a process that died: sent, not claimed
            fold(self.journal_dir, self.outbox.accept, release=self.outbox.hand_back,
                 skip=self._journal_path())  # fmt: skip
        at = time.monotonic()
        claim = self.outbox.claim(limit, now=self.clock(), stale_after=stale_after)
        if stale_after is not None:
            self._stale_at = time.monotonic()
        if self.journal is not None:  # before any of them goes out: a fold hands these back
            self.journal.claimed(r.lease_token for r in claim.rows)
        self.leases.claimed(claim.rows, at=at)
        rows = self._not_accepted_elsewhere(claim.rows)
        stale = len(claim.stale)
        if stale:
            log.warning("%d deliveries older than retry_give_up_hours failed as stale", stale)
            self.stats.stale += stale
            self.stats.failed += stale
        if claim.skipped or stale:
            self.stats.skipped += claim.skipped
            self._progress()
        return rows

    def _not_accepted_elsewhere(self, rows: list[ClaimedRow]) -> list[ClaimedRow]:
        """Rows taken over that another worker's journal shows accepted: recorded, not sent."""
        if self.journal_dir is None:
            return rows
        rows, done = accepted_elsewhere(self.journal_dir, rows, skip=self._journal_path())
        if done:
            log.info("%d rows taken over were accepted under their old lease", len(done))
            self._record(done)
        return rows

    def _journal_path(self) -> Path | None:
        return None if self.journal is None else self.journal.path

    def _load(self, rows: list[ClaimedRow]) -> None:
        for issue_id in {r.issue_id for r in rows if r.issue_id is not None} - set(self._renders):
            try:  # load each issue once, here, rather than racing for it in the pool
                self._renders[issue_id] = self.renderers.for_issue(issue_id)
            except ConfigError as exc:
                self._unavailable = exc
            except DatabaseUnavailableError:
                raise
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

    # What the delivery paths (pipeline.py, threaded.py) call.

    def may_start(self) -> bool:
        return not self.stop.is_set() and self._unavailable is None

    def render(self, row: ClaimedRow) -> Envelope:
        return self._render(row)

    def fail_setup(self, exc: ConfigError) -> None:
        self._unavailable = exc

    def record(self, outcomes: list[Outcome]) -> None:
        self._record(outcomes)

    def fenced(self, rows: list[ClaimedRow]) -> list[ClaimedRow]:
        """Of ``rows`` about to go on the wire, those this worker still holds for
        ``fence_ahead`` seconds at least; when one is short of that, the leases are renewed
        first (``Heartbeat.beat``), so a worker that was paused past its lease learns which
        rows are still its own before it sends any. Rows not held are left out: they go back
        under the fence (the caller records them as handed back)."""
        if self.leases.soonest(rows) < self.fence_ahead and self._beat is not None:
            try:
                self._beat.beat()
            except DatabaseUnavailableError as exc:
                log.debug("could not renew the leases before a chunk: %s", exc)
        return [r for r in rows if self.leases.holds_row(r, ahead=self.fence_ahead / 2)]

    def accepted(self, envelope: Envelope, result: SendResult) -> None:
        """An acceptance, into the journal at once (the one-message-at-a-time path's receipt)."""
        if self.journal is not None:
            self.journal.accepted(envelope, result)

    def halt(self, reason: str) -> None:
        """Stop as if this worker's breaker had tripped (another delivery process's did):
        ``run`` raises ``SendHaltedError`` and no bounce of the held streak counts."""
        self.breaker.trip(reason)
        with self._lock:
            if self._unavailable is None:
                self._unavailable = SendHaltedError(reason)

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
        bounces = self.breaker.take_bounces()
        self.outbox.record(outcomes, now=self.clock(), bounces=bounces)
        self.leases.done(o.row for o in outcomes)
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
