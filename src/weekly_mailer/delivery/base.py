"""The backend contract: send one message to one recipient; close; use as a context manager.

Backends translate their own errors into :class:`~weekly_mailer.errors.TemporaryFailure`
(retry later: 4xx, network trouble; ``throttle=True`` for 421/450-454) or
:class:`~weekly_mailer.errors.PermanentFailure` (5xx: never retried, a hard bounce), here at the
boundary and nowhere else.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

from ..errors import DeliveryError


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """One message for one recipient: SMTP envelope addresses and the serialised bytes (CRLF)."""

    sender: str
    recipient: str
    data: bytes
    message_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class SendResult:
    """What the backend reports for an accepted message (e.g. the server's reply)."""

    code: int = 250
    reply: str = "OK"


class BackendUnavailableError(DeliveryError):
    """The backend cannot take any message now (cannot connect, log in, or write).

    Not about one recipient: the worker hands the claimed rows back untouched and stops (or, as a
    daemon, waits and tries again), so an outage never turns into failed or deferred rows.
    """


@runtime_checkable
class Backend(Protocol):
    """A way to hand messages over. Implementations must be safe to use from one thread."""

    def send(self, envelope: Envelope) -> SendResult:
        """Deliver one message or raise ``TemporaryFailure``/``PermanentFailure``."""
        ...

    def close(self) -> None:
        """Release connections and files. Safe to call twice."""
        ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...
