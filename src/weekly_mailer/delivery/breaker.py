"""The worker's circuit breaker: the same 5xx for ``limit`` recipients in a row stops the send
(a server refusing everyone must not fail, or bounce, the whole list).

The hard bounces of the current streak of identical refusals are held back: another reply, a
delivery, or the end of a run that was not stopped by the breaker releases them to be counted
(:meth:`Breaker.take_bounces`); a trip drops them, so a server that refuses everyone bounces
nobody. The rows keep their failure recorded either way."""

from __future__ import annotations

import threading


class Breaker:
    """Thread-safe: the worker's pool threads report every reply here."""

    def __init__(self, limit: int = 20) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._streak: tuple[str, int] = ("", 0)
        self._held: list[int] = []  # subscribers refused during the current streak
        self._bounces: list[int] = []  # released: to be counted at the next write
        self.tripped: str | None = None  # the message of the trip, once tripped

    def reset(self) -> None:
        """A new run: no streak, nothing held, not tripped."""
        with self._lock:
            self._streak, self._held, self._bounces, self.tripped = ("", 0), [], [], None

    def note(self, reply: str | None, *, subscriber_id: int = 0, bounce: bool = False) -> bool:
        """Note one reply (``None``: not a 5xx). True when this reply tripped the breaker."""
        with self._lock:
            if reply is None:
                self._streak = ("", 0)
                self._release()
                return False
            if self._streak[0] == reply:
                n = self._streak[1] + 1
            else:
                n = 1
                self._release()
            self._streak = (reply, n)
            if self.tripped is not None:
                return False  # in flight when it tripped: held against nobody
            if bounce:
                self._held.append(subscriber_id)
            if n >= self.limit:
                self._held = []
                self.tripped = (
                    f"stopped the send: the server gave {n} recipients in a row the same "
                    f"refusal ({reply}); the rest are still queued"
                )
                return True
            return False

    def trip(self, reason: str) -> None:
        """Another delivery process's breaker tripped: this send stops too, and the bounces
        of the streak held here are dropped as if this breaker had tripped."""
        with self._lock:
            if self.tripped is None:
                self.tripped, self._held = reason, []

    def end_run(self) -> None:
        """The run is over: a streak the breaker did not stop was real bounces."""
        with self._lock:
            if self.tripped is None:
                self._release()
            self._held = []

    def has_bounces(self) -> bool:
        with self._lock:
            return bool(self._bounces)

    def take_bounces(self) -> list[int]:
        """The released bounces not counted yet (and forget them)."""
        with self._lock:
            out, self._bounces = self._bounces, []
            return out

    def _release(self) -> None:
        if self.tripped is None:
            self._bounces.extend(self._held)
        self._held = []
