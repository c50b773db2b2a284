"""An in-memory backend for unit tests: keeps every envelope; an optional handler decides."""

from __future__ import annotations

import threading
from collections.abc import Callable

from weekly_mailer.delivery.backends.base import Envelope, SendResult

Handler = Callable[[Envelope], SendResult | None]


class MemoryBackend:
    """Keeps accepted envelopes in ``sent``. See :class:`.base.Backend`.

    ``handler`` may raise ``TemporaryFailure``/``PermanentFailure`` to refuse a message, or
    return a ``SendResult`` to accept it with that reply.
    """

    in_process_only = True  # its messages live in this process: one delivery process only

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.sent: list[Envelope] = []
        self.attempts = 0
        self.closed = False
        self._lock = threading.Lock()

    def send(self, envelope: Envelope) -> SendResult:
        with self._lock:
            self.attempts += 1
        result = self.handler(envelope) if self.handler is not None else None
        with self._lock:
            self.sent.append(envelope)
        return result or SendResult(250, "2.0.0 Kept in memory")

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> MemoryBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
