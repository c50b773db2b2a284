"""A real SMTP server for tests: aiosmtpd in a thread, with scriptable faults.

``SMTPServer`` records every accepted message as bytes. Its ``rules`` decide, per recipient,
whether to accept, refuse (5xx), defer (4xx) or drop the connection.
"""

from __future__ import annotations

import email
import email.policy
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    """A free TCP port on loopback (aiosmtpd's port=0 breaks its readiness probe)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    helo: str = ""  # the name the client greeted with (EHLO or HELO) on this connection

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Faults:
    """Per-message fault injection, decided at DATA time."""

    refuse: set[str] = field(default_factory=set)  # 550 for these recipients, always
    defer_ratio: float = 0.0  # 451 at random
    drop_ratio: float = 0.0  # close the connection at random
    throttle_ratio: float = 0.0  # 421 at random
    seed: int = 1234
    custom: Callable[[str], str | None] | None = None  # return a reply to override

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def roll(self) -> float:
        with self._lock:
            return self._rng.random()


class _Handler:
    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, srv: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.server.faults.refuse:
            self.server.refused.append(address)
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, srv: SMTP, session: Session, envelope: Envelope) -> str:
        faults = self.server.faults
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        if faults.custom is not None:
            reply = faults.custom(rcpt)
            if reply is not None:
                if reply == "drop":
                    self.server.dropped += 1
                    assert srv.transport is not None
                    srv.transport.close()
                    return "421 closing"
                return reply
        r = faults.roll()
        if r < faults.drop_ratio:
            self.server.dropped += 1
            assert srv.transport is not None
            srv.transport.close()
            return "421 4.4.2 Connection dropped"
        if r < faults.drop_ratio + faults.defer_ratio:
            self.server.deferred += 1
            return "451 4.3.0 Try again later"
        if r < faults.drop_ratio + faults.defer_ratio + faults.throttle_ratio:
            self.server.deferred += 1
            return "421 4.7.0 Too many messages, slow down"
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        with self.server.lock:
            self.server.messages.append(
                Received(
                    str(envelope.mail_from), list(envelope.rcpt_tos), content,
                    helo=str(session.host_name or ""),
                )  # fmt: skip
            )
        return "250 2.0.0 Queued"


class SMTPServer:
    """An aiosmtpd server on 127.0.0.1 in a thread; use as a context manager."""

    def __init__(self, faults: Faults | None = None, **kwargs: Any) -> None:
        self.faults = faults or Faults()
        self.port = free_port()
        self.lock = threading.Lock()
        self.messages: list[Received] = []
        self.refused: list[str] = []
        self.deferred = 0
        self.dropped = 0
        self._kwargs = kwargs
        self.controller = self._controller()

    def _controller(self) -> Controller:
        return Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10, **self._kwargs
        )

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SMTPServer:
        # The free port may be taken by someone else between choosing and binding it: choose
        # again rather than fail (before start, nobody knows this server's URL yet).
        for attempt in range(5):
            try:
                self.controller.start()
                return self
            except (OSError, RuntimeError):
                if attempt == 4:
                    raise
                self.port = free_port()
                self.controller = self._controller()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.messages)

    def to(self, address: str) -> list[Received]:
        return [m for m in self.received() if address.lower() in (r.lower() for r in m.rcpt_tos)]


def wait_for_mail(smtp: SMTPServer, address: str, count: int, timeout: float = 30) -> Received:
    """The ``count``-th message ``smtp`` received for ``address``, waiting up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = smtp.to(address)
        if len(got) >= count:
            return got[count - 1]
        time.sleep(0.1)
    raise AssertionError(f"no message #{count} for {address} within {timeout}s")
