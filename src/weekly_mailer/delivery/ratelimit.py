"""Pacing shared by every connection: a token bucket (``send_rate``) and a throttle gate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_for_turn(delay: float, stop: threading.Event | None) -> bool:
    """Sleep ``delay`` seconds (a reserved turn); ``False`` when ``stop`` was or gets set."""
    if delay <= 0:
        return not (stop is not None and stop.is_set())
    if stop is None:
        time.sleep(delay)
        return True
    return not stop.wait(delay)


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
        return wait_for_turn(self.reserve(), stop)


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


class SlowDown:
    """After a throttling reply the whole send goes slower.

    The speed before the reply is ``send_rate`` or, when that is 0, the rate measured over the
    last starts. A reply halves it; the cap then climbs back to full speed over ``seconds`` after
    the last such reply (it doubles in that time). Other replies meanwhile restart the climb and
    do not halve it again, so steady greylisting costs a factor of two, never a stop.

    A reply about our pace (``again``: ``policy.pace_throttle``, a relay's "454 Throttling
    failure") is the relay saying how fast it takes mail, and the send settles on that rate,
    AIMD-like. It cuts again, once ``GAP`` seconds have passed since the last cut, by the share
    of the starts since that cut the relay refused (a send at twice the relay's rate is refused
    half its messages: it halves; a cut keeps at most ``MILD`` of the cap, at least ``DEEP``,
    or ``FEW`` when fewer than ``WINDOW`` starts were made since the last cut),
    and from then on climbs slowly: ``PACE_CLIMB`` of the cut a second, from the cut (further
    pace replies do not restart it), so it crosses the relay's rate only now and then, and each
    crossing costs a few refusals, not a flood. Before, a cut of a fifth every three seconds
    and a climb that doubled the cap over ``seconds`` swung round the relay's rate: 7,290 and
    15,690 refusals for 2,000 messages at 14 a second (tests/delivery/test_throttling.py).
    """

    WINDOW = 32  # starts used to measure the rate
    GAP = 1.0  # seconds between two pace cuts: replies to starts made before a cut still come
    FLOOR = 0.05  # messages a second: the slowest a send gets
    MILD = 0.95  # the least a pace cut takes off: of the cap in force
    DEEP = 0.2  # the most: a cut never leaves less than a fifth of the cap in force (replies
    # to starts made before the last cut still come, and would make the share look worse)
    FEW = 0.8  # the most a cut takes with fewer than WINDOW starts since the last one
    PACE_CLIMB = 0.04  # after a pace cut, the cap grows by this share of the cut a second

    def __init__(
        self,
        seconds: float,
        *,
        send_rate: float = 0.0,
        fallback_rate: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = float(seconds)
        self.send_rate = float(send_rate)
        self.fallback_rate = fallback_rate
        self._clock = clock
        self._starts: list[float] = []
        self._base = 0.0  # the rate before the slowdown (0: not slowed)
        self._cut = 0.0  # the rate at the last cut
        self._since = 0.0  # the climb starts here
        self._last_cut = 0.0
        self._next = 0.0
        self._paced = False  # a pace reply came: the slow climb
        self._started = 0  # starts since the last cut
        self._refused = 0  # pace replies since the last cut
        self._lock = threading.Lock()
        self.slowdowns = 0

    def _measured(self) -> float:
        starts = self._starts
        if len(starts) >= 2 and starts[-1] > starts[0]:
            return (len(starts) - 1) / (starts[-1] - starts[0])
        return self.fallback_rate

    def note(self, *, again: bool = False) -> None:
        """A throttling reply: half speed now, back to full over ``seconds``; ``again`` (a
        reply about our pace): cut by the share refused, at most once every ``GAP`` seconds,
        then the slow climb."""
        with self._lock:
            now = self._clock()
            rate = self._rate(now)
            if again:
                self._refused += 1
            if rate <= 0:
                self._base = self.send_rate if self.send_rate > 0 else self._measured()
                self._cut = self._base / 2
                self._cut_at(now)
                self.slowdowns += 1
            elif again and now - self._last_cut >= self.GAP:
                taken = 1.0 - self._refused / max(self._started, self._refused, 1)
                # Few starts since the cut: a burst refused together (a chunk's RCPTs) says
                # little about the rate; the deep cuts need a window's worth of starts.
                deepest = self.DEEP if self._started >= self.WINDOW else self.FEW
                factor = min(self.MILD, max(deepest, taken))
                self._cut = max(self.FLOOR, min(rate, self._base) * factor)
                self._cut_at(now)
            self._paced = self._paced or again
            if not again:
                self._since = now

    def _cut_at(self, now: float) -> None:
        self._last_cut = self._since = now
        self._started = self._refused = 0

    def _rate(self, now: float) -> float:
        """The cap at ``now`` (0: not slowed)."""
        if self._base <= 0 or self.seconds <= 0:
            return 0.0
        climb = self.PACE_CLIMB if self._paced else 1.0 / self.seconds
        rate = self._cut * (1.0 + max(0.0, now - self._since) * climb)
        return 0.0 if rate >= self._base else rate

    def cap(self) -> float:
        """The rate allowed now (messages/second; 0 = not slowed)."""
        with self._lock:
            return self._rate(self._clock())

    def reserve(self) -> float:
        """Record a start; return how many seconds the caller must wait before it."""
        with self._lock:
            now = self._clock()
            rate = self._rate(now)
            wait = 0.0
            if rate > 0:
                start = max(now, self._next)
                self._next = start + 1.0 / rate
                wait = start - now
            self._starts.append(now + wait)
            del self._starts[: -self.WINDOW]
            self._started += 1
            return wait

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for our turn. Returns ``False`` when ``stop`` was set while waiting."""
        return wait_for_turn(self.reserve(), stop)
