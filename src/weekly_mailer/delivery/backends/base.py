"""The backend contract: send one message to one recipient; close; use as a context manager.

Backends translate their own errors into :class:`~weekly_mailer.errors.TemporaryFailure`
(retry later: 4xx, network trouble; ``throttle=True`` for 421/450-454),
:class:`~weekly_mailer.errors.PermanentFailure` (5xx: never retried; whether it counts as a hard
bounce is the classifier's word, ``results.counts_as_bounce``), :class:`NotABounce` (a 5xx about
the message or the sender, never a bounce), :class:`BackendBusyError`
(not now: nothing attempted) or :class:`BackendUnavailableError` (not at all: outage, refused
sender), here at the boundary and nowhere else.

A backend that takes chunks of messages at once and answers them later (the pipelined SMTP
engine) is a ``BatchBackend``: ``submit_batch`` plus ``abort()`` (cut the messages in flight, a
second Ctrl-C). Whether a backend is one is decided once, when it is resolved
(``backends.resolve_backend`` and ``batch_backend``), never at send time. Given a ``Fence``, a
batch backend asks it right before each message goes on the wire, and sends nothing it does
not hold (``LeaseLostError``); given ``Receipts``, it reports each acceptance the moment the
server's reply to the final dot arrives.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from weekly_mailer.errors import (
    BackendBusyError,
    BackendUnavailableError,
    DeliveryError,
    LeaseLostError,
    NotABounce,
    PermanentFailure,
    SendHaltedError,
    TemporaryFailure,
)

__all__ = [
    "Backend",
    "BackendBusyError",
    "BackendUnavailableError",
    "BatchBackend",
    "BatchResult",
    "DeliveryError",
    "Envelope",
    "Fence",
    "LeaseLostError",
    "NotABounce",
    "PermanentFailure",
    "Receipts",
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
    # The caller's handle on this message (the worker's: its claimed outbox row), for its
    # ``Fence`` and ``Receipts``; backends pass it along and never look inside.
    ref: Any = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class SendResult:
    """What the backend reports for an accepted message (e.g. the server's reply)."""

    code: int = 250
    reply: str = "OK"

BatchResult = SendResult | DeliveryError


# What a relay says when we go faster than it allows (Amazon SES's "454 Throttling failure:
# Maximum sending rate exceeded" and "Daily message quota exceeded", "rate limit exceeded"…):
# the sender's pace, never the reader's fault, whatever the code.
RELAY_THROTTLE = re.compile(
    r"throttl|(sending|message|daily|hourly|send) (message |sending )?(quota|rate|limit) "
    r"(exceeded|reached)|maximum sending rate|rate limit(ed)?( exceeded)?\b|too many messages",
    re.IGNORECASE,
)


def relay_throttle(reply: str) -> bool:
    """Whether a reply's text says we are sending faster than the relay allows."""
    return RELAY_THROTTLE.search(reply) is not None


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


class Fence(Protocol):
    """Whether a message may still go on the wire (the worker: its lease on the row is held)."""

    def holds(self, envelope: Envelope) -> bool: ...


class Receipts(Protocol):
    """Told of each acceptance the moment the server's reply arrives (the worker's journal)."""

    def accepted(self, envelope: Envelope, result: SendResult) -> None: ...


@runtime_checkable
class BatchBackend(Backend, Protocol):
    """A backend that takes a chunk of messages at once and answers each later."""

    def submit_batch(
        self,
        envelopes: Sequence[Envelope],
        *,
        fence: Fence | None = None,
        receipts: Receipts | None = None,
    ) -> concurrent.futures.Future[list[BatchResult]]:
        """Start sending and return at once; the future gives one result per envelope, in
        order: a ``SendResult`` or the ``DeliveryError`` ``send`` would have raised (a message
        the ``fence`` does not hold: ``LeaseLostError``, nothing of it sent)."""
        ...

    def abort(self) -> None:
        """Cut the messages in flight now (a second Ctrl-C)."""
        ...
