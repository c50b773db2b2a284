"""Pacing shared by every connection: a token bucket (``send_rate``) and a throttle gate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, bursts of ``burst``; 0 = unlimited.

    Thread-safe. A caller reserves its token under the lock and sleeps outside it, so waiting
    threads are served in order without busy-looping.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst) if burst is not None else 1.0)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token; return how many seconds the caller must wait before using it."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for a token. Returns ``False`` when ``stop`` was set while waiting."""
        delay = self.reserve()
        if delay <= 0:
            return not (stop is not None and stop.is_set())
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)


class ThrottleGate:
    """After a throttling reply the whole send pauses; every sender waits at the gate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0
        self._lock = threading.Lock()
        self.pauses = 0

    def pause(self, seconds: float) -> None:
        """Close the gate for ``seconds`` from now (pauses overlap; they do not add up)."""
        with self._lock:
            until = self._clock() + seconds
            if until > self._until:
                if self._until <= self._clock():
                    self.pauses += 1
                self._until = until

    def remaining(self) -> float:
        with self._lock:
            return max(0.0, self._until - self._clock())

    def wait(self, stop: threading.Event | None = None) -> bool:
        """Wait until the gate opens. Returns ``False`` when ``stop`` was set while waiting."""
        while True:
            left = self.remaining()
            if left <= 0:
                return not (stop is not None and stop.is_set())
            if stop is None:
                time.sleep(left)
            elif stop.wait(left):
                return False
