"""The backend contract: send one message to one recipient; close; use as a context manager.

Backends translate their own errors into :class:`~weekly_mailer.errors.TemporaryFailure`
(retry later: 4xx, network trouble; ``throttle=True`` for 421/450-454),
:class:`~weekly_mailer.errors.PermanentFailure` (5xx about the mailbox: never retried, a hard
bounce), :class:`NotABounce` (other 5xx: never retried, no bounce), :class:`BackendBusyError`
(not now: nothing attempted) or :class:`BackendUnavailableError` (not at all: outage, refused
sender), here at the boundary and nowhere else. A backend may also offer ``abort()``: cut the
messages in flight (a second Ctrl-C).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Protocol, runtime_checkable

from weekly_mailer.errors import (
    BackendBusyError,
    BackendUnavailableError,
    DeliveryError,
    NotABounce,
    PermanentFailure,
    SendHaltedError,
    TemporaryFailure,
)

__all__ = [
    "Backend",
    "BackendBusyError",
    "BackendUnavailableError",
    "DeliveryError",
    "Envelope",
    "NotABounce",
    "PermanentFailure",
    "SendHaltedError",
    "SendResult",
    "TemporaryFailure",
    "enhanced_status",
]

_ENHANCED = re.compile(r"^\s*\d{3}[ -]([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """One message for one recipient: SMTP envelope addresses and the serialised bytes (CRLF)."""

    sender: str
    recipient: str
    data: bytes
    message_id: str = ""
    # ``data`` is SMTP's DATA payload as it is, but for the final dot: CRLF line ends only, no
    # line starting with a dot, ending in CRLF (``compose.personalise_for_smtp`` knows).
    # Otherwise the backend makes it so.
    wire_safe: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class SendResult:
    """What the backend reports for an accepted message (e.g. the server's reply)."""

    code: int = 250
    reply: str = "OK"










def enhanced_status(reply: str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code of a reply text such as ``"451 4.7.1 Slow down"``."""
    m = _ENHANCED.match(reply)
    return None if m is None else (int(m[1]), int(m[2]), int(m[3]))


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
