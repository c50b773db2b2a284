"""The worker's circuit breaker: the same 5xx for ``limit`` recipients in a row stops the send
(a server refusing everyone must not fail, or bounce, the whole list).

The hard bounces of the current streak of identical refusals are held back: another reply, a
delivery, or the end of a run that was not stopped by the breaker releases them to be counted
(:meth:`Breaker.take_bounces`); a trip drops them, so a server that refuses everyone bounces
nobody. The rows keep their failure recorded either way.

With several delivery processes (``processes.py``) the streak is theirs together: each child's
breaker counts in one :class:`SharedStreak` in shared memory, so the send stops after ``limit``
identical refusals in a row across all of them (plus what was in flight), not ``limit`` each."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

LOCK_SECONDS = 1.0  # a child killed inside the few lines under the lock cannot stall the others


class _LocalStreak:
    """The streak of one process: ``(generation, length)`` after each reply."""

    def __init__(self) -> None:
        self._key, self._generation, self._count = "", 0, 0

    def note(self, reply: str | None) -> tuple[int, int]:
        if reply is None or reply != self._key:
            self._generation += 1
            self._key, self._count = reply or "", 0
        if reply is not None:
            self._count += 1
        return self._generation, self._count


class SharedStreak:
    """The streak of every delivery process of one send, in shared memory (made by the parent
    with its multiprocessing context; handed to each child). Each reply is one step under a
    process-shared lock: a different reply (or a non-5xx) starts a new generation."""

    def __init__(self, ctx: Any) -> None:
        self._lock = ctx.Lock()
        self._key = ctx.RawValue("q", 0)  # the reply's hash (0: no streak)
        self._generation = ctx.RawValue("q", 0)
        self._count = ctx.RawValue("i", 0)

    def note(self, reply: str | None) -> tuple[int, int]:
        key = 0 if reply is None else _hash(reply)
        locked = self._lock.acquire(timeout=LOCK_SECONDS)
        try:
            if key == 0 or key != self._key.value:
                self._generation.value += 1
                self._key.value, self._count.value = key, 0
            if key != 0:
                self._count.value += 1
            return int(self._generation.value), int(self._count.value)
        finally:
            if locked:
                self._lock.release()


def _hash(reply: str) -> int:
    value = int.from_bytes(hashlib.blake2b(reply.encode(), digest_size=8).digest(), "big") >> 1
    return value or 1  # 0 means "no streak"


class Breaker:
    """Thread-safe: the worker's pool threads report every reply here."""

    def __init__(self, limit: int = 20) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._streak: _LocalStreak | SharedStreak = _LocalStreak()
        self._generation = 0  # the streak generation the held bounces belong to
        self._held: list[int] = []  # subscribers refused during the current streak
        self._bounces: list[int] = []  # released: to be counted at the next write
        self.tripped: str | None = None  # the message of the trip, once tripped

    def share(self, streak: SharedStreak) -> None:
        """Count in ``streak``, shared with the other delivery processes of this send."""
        with self._lock:
            self._streak = streak

    def reset(self) -> None:
        """A new run: nothing held, not tripped (a shared streak goes on: it is the send's)."""
        with self._lock:
            self._held, self._bounces, self.tripped = [], [], None
            if isinstance(self._streak, _LocalStreak):
                self._streak = _LocalStreak()

    def note(self, reply: str | None, *, subscriber_id: int = 0, bounce: bool = False) -> bool:
        """Note one reply (``None``: not a 5xx). True when this reply tripped the breaker."""
        with self._lock:
            generation, n = self._streak.note(reply)
            if generation != self._generation:  # the streak the held bounces were in ended
                self._release()
                self._generation = generation
            if reply is None or self.tripped is not None:
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
