"""The worker's small policies: its figures, lease owner names, backoff, which throttling replies
pause the whole send and which are about our pace (never a failure), and the "hurry" event a
second Ctrl-C sets. Re-exported by ``worker``."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING

from weekly_mailer.delivery.backends.base import enhanced_status, relay_throttle
from weekly_mailer.errors import TemporaryFailure

if TYPE_CHECKING:
    from weekly_mailer.config import Settings


@dataclasses.dataclass
class Stats:
    """What one worker did (this run only)."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    released: int = 0
    throttled: int = 0
    slowed: int = 0
    stale: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def attempted(self) -> int:
        return self.sent + self.deferred + self.failed

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0


def make_owner() -> str:
    """A lease owner name: host, process and a random suffix (unique per worker)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


_HURRY: weakref.WeakKeyDictionary[threading.Event, threading.Event] = weakref.WeakKeyDictionary()
_HURRY_LOCK = threading.Lock()


def hurry_for(stop: threading.Event) -> threading.Event:
    """The "hurry" event that goes with a ``stop`` event (a second Ctrl-C sets it): the worker
    then stops waiting for the messages in flight and hands their rows back."""
    with _HURRY_LOCK:
        event = _HURRY.get(stop)
        if event is None:
            event = _HURRY[stop] = threading.Event()
        return event


def hard_throttle(exc: TemporaryFailure) -> bool:
    """421 or an enhanced 4.7.x: pause the whole send (other throttling replies slow it)."""
    status = enhanced_status(str(exc))
    return exc.code == 421 or (status is not None and status[:2] == (4, 7))


def pace_throttle(exc: TemporaryFailure) -> bool:
    """A reply about our pace, not about the reader or the message: 421, 454, an enhanced
    4.7.x (``451 4.7.650``, ``421 4.7.0 try again later``) or a relay's throttling text
    (``454 Throttling failure``, ``Daily message quota exceeded``), at RCPT, at DATA or after
    the dot. The row waits (deferred, due again after the pause, nothing counted toward giving
    up) and the send slows down; it never fails."""
    if not exc.throttle:
        return False
    return hard_throttle(exc) or exc.code == 454 or relay_throttle(str(exc))


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed try: doubling from the initial delay."""
    delay = settings.retry_initial_seconds * (2 ** max(0, attempts - 1))
    return float(min(settings.retry_max_seconds, delay))
