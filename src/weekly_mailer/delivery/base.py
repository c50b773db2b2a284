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

from ..errors import DeliveryError, PermanentFailure, TemporaryFailure

_ENHANCED = re.compile(r"^\s*\d{3}[ -]([245])\.(\d{1,3})\.(\d{1,3})\b")


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


class BackendBusyError(TemporaryFailure):
    """The server is not taking a connection just now (a 4xx greeting: "too many connections").

    Nothing was attempted: the worker hands the row back untouched and pauses the whole send.
    """


class NotABounce(PermanentFailure):
    """A 5xx that is about the message or the sender's standing, not the mailbox (e.g. a 554
    policy refusal at DATA): the row fails and is not retried, but it is not a hard bounce."""


class SendHaltedError(DeliveryError):
    """The worker stopped the whole send (e.g. the same refusal for many recipients in a row)."""


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
