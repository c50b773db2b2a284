"""The fence: which claimed rows a worker still holds, and until when it may send them.

A lease is only a lease if it is checked before sending. Every row a worker claims is held
under its claim's token until a moment of this process's monotonic clock: the claim's start
plus ``lease_seconds``, less a margin (for the commit's latency and the clocks of other hosts).
The heartbeat (``heartbeat.py``) renews every row the database still shows under this worker
and moves that moment on for those rows only; a row another worker claimed meanwhile (it
carries that worker's token) is not renewed, and its moment passes.

``Leases`` is the ``Fence`` the backends ask right before a message goes on the wire
(``holds``): a process stopped for longer than its lease (SIGSTOP, a VM freeze, a GC pause)
finds, when it resumes, every moment passed, and sends nothing until a renewal has shown
which rows are still its own (``confirm``, before a chunk; the heartbeat, meanwhile). What it
does not hold goes back under the fence (``outbox.release(rows=...)``): nothing, if another
worker has the row now.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weekly_mailer.delivery.backends.base import Envelope
    from weekly_mailer.store.outbox import ClaimedRow

__all__ = ["Leases"]

MARGIN_FRACTION = 0.2  # of lease_seconds, kept back from every lease (at most MARGIN_MAX)
MARGIN_MAX = 5.0


class Leases:
    """The rows this worker holds (by id, with their claim's token) and, for each, the moment
    of ``time.monotonic()`` until which it may send it. Thread-safe."""

    def __init__(
        self, lease_seconds: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.lease_seconds = lease_seconds
        self.span = lease_seconds - min(MARGIN_MAX, lease_seconds * MARGIN_FRACTION)
        self.monotonic = monotonic
        self._held: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._held)

    def claimed(self, rows: Iterable[ClaimedRow], *, at: float) -> None:
        """Rows a claim that started at ``at`` (monotonic) leased to this worker."""
        until = at + self.span
        with self._lock:
            for row in rows:
                self._held[row.delivery_id] = (row.lease_token, until)

    def renewed(self, held: Iterable[tuple[int, str]], *, at: float) -> int:
        """The ``(id, token)`` pairs a renewal that started at ``at`` found still ours: their
        moment moves on. Returns how many of the rows we hold it renewed."""
        until = at + self.span
        n = 0
        with self._lock:
            for id_, token in held:
                mine = self._held.get(id_)
                if mine is not None and mine[0] == token:
                    self._held[id_] = (token, max(until, mine[1]))
                    n += 1
        return n

    def done(self, rows: Iterable[ClaimedRow]) -> None:
        """Rows recorded or handed back: no longer held."""
        with self._lock:
            for row in rows:
                self._held.pop(row.delivery_id, None)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()

    def tokens(self) -> set[str]:
        """The claim tokens of the rows held."""
        with self._lock:
            return {token for token, _ in self._held.values()}

    def holds_row(self, row: ClaimedRow, *, ahead: float = 0.0) -> bool:
        """Whether ``row`` is held under its own claim for ``ahead`` seconds more at least."""
        mine = self._held.get(row.delivery_id)
        return (
            mine is not None
            and mine[0] == row.lease_token
            and self.monotonic() + ahead < mine[1]
        )

    def holds(self, envelope: Envelope) -> bool:
        """The ``Fence`` the backends ask: is the message's row held now?"""
        row = envelope.ref
        return row is None or self.holds_row(row)

    def soonest(self, rows: Sequence[ClaimedRow]) -> float:
        """Seconds until the first of ``rows`` stops being held (0 if one is not)."""
        now = self.monotonic()
        left = float("inf")
        with self._lock:
            for row in rows:
                mine = self._held.get(row.delivery_id)
                if mine is None or mine[0] != row.lease_token:
                    return 0.0
                left = min(left, mine[1] - now)
        return max(0.0, left)
