"""What one attempt's result means: its ``Outcome`` (sent, deferred with backoff, failed, handed
back), and what it means for the whole send (a throttling pause, the circuit breaker, a busy
server, an outage). Both delivery paths (``pipeline.py``, ``threaded.py``) settle every result
here; ``worker.Worker`` is the ``Settling`` they call."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer.delivery.backends.base import (
    BackendBusyError,
    BackendUnavailableError,
    SendHaltedError,
    SendResult,
)
from weekly_mailer.delivery.policy import backoff, hard_throttle, pace_throttle
from weekly_mailer.delivery.results import counts_as_bounce
from weekly_mailer.errors import (
    DeliveryError,
    LeaseLostError,
    PermanentFailure,
    TemporaryFailure,
    WeeklyMailerError,
)
from weekly_mailer.store.models import DeliveryStatus
from weekly_mailer.store.outbox import ClaimedRow, Outcome

if TYPE_CHECKING:
    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.breaker import Breaker
    from weekly_mailer.delivery.ratelimit import SlowDown, ThrottleGate

log = logging.getLogger("weekly_mailer.delivery.worker")

__all__ = ["Settling"]


class Settling:
    """The settling half of the worker: the state it needs is set up by ``Worker``."""

    settings: Settings
    clock: Callable[[], dt.datetime]
    breaker: Breaker
    gate: ThrottleGate
    slowdown: SlowDown
    busy_limit: int
    _busy: int
    _lock: threading.Lock
    _unavailable: WeeklyMailerError | None

    def settle(
        self, row: ClaimedRow, result: SendResult | BaseException, *, at: dt.datetime | None = None
    ) -> Outcome:
        """The outcome of one attempt from what the backend returned or raised, with what it
        means for the whole send (pauses, the breaker, an outage). ``at``: when the server
        answered (the batched path reads the clock once a chunk, so a chunk's copies share
        their ``sent_at`` and are recorded by one statement); by default now."""
        if isinstance(result, SendResult):
            self._note_refusal(row, None)
            with self._lock:
                self._busy = 0
            return Outcome(
                row, DeliveryStatus.SENT.value, code=result.code, at=at or self.clock()
            )
        exc = result
        if isinstance(exc, LeaseLostError):  # nothing went out: back under the fence
            return Outcome(row, DeliveryStatus.QUEUED.value)
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
            if exc.throttle:
                self.slowdown.note(again=pace_throttle(exc))
            if pace_throttle(exc):
                return self._held_back(row, exc, hard=hard_throttle(exc))
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

    def _held_back(self, row: ClaimedRow, exc: TemporaryFailure, *, hard: bool) -> Outcome:
        """A reply about our pace (``policy.pace_throttle``): the row waits, due again once the
        send's pause is over (at once after a soft one: the slowdown spaces the starts), with
        nothing counted toward giving up (no attempt, no first failure), and never fails."""
        now = self.clock()
        wait = self.settings.throttle_pause_seconds if hard else 0.0
        return Outcome(
            row,
            DeliveryStatus.DEFERRED.value,
            code=exc.code,
            error=str(exc),
            next_attempt_at=now + dt.timedelta(seconds=wait),
            at=now,
            counted=False,
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
