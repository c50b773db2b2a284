"""An aiosmtpd server that keeps a record of every message it accepts, not the message itself:
when (``time.monotonic()``), from which client port, to whom, with which Message-ID. What a fault
test needs to count copies per reader and to tell which process sent each one, at 1,000s of
messages without holding their bytes."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.smtpd import free_port

_MID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() when the server accepted it (before its 250 went out)
    port: int  # the client's port: the connection, and so the process, it came on
    rcpt: str
    message_id: str


class _Handler:
    def __init__(self, server: RecordingSMTPServer) -> None:
        self.server = server

    async def handle_DATA(self, srv: SMTP, session: Session, envelope: Envelope) -> str:
        if self.server.delay > 0:
            await asyncio.sleep(self.server.delay)
        content = envelope.original_content or envelope.content or b""
        assert isinstance(content, bytes)
        found = _MID.search(content[:8192])
        peer: Any = session.peer
        arrival = Arrival(
            time.monotonic(),
            int(peer[1]) if isinstance(peer, tuple) else 0,
            envelope.rcpt_tos[0].lower() if envelope.rcpt_tos else "",
            found.group(1).decode() if found else "",
        )
        with self.server.lock:
            self.server.arrivals.append(arrival)
        return "250 2.0.0 Queued"


class RecordingSMTPServer:
    """aiosmtpd on 127.0.0.1 in a thread, answering each final dot after ``delay`` seconds (an
    asyncio sleep: the other connections go on meanwhile); a context manager."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.arrivals: list[Arrival] = []
        self.port = free_port()
        self.controller = self._controller()

    def _controller(self) -> Controller:
        return Controller(_Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> RecordingSMTPServer:
        for attempt in range(5):  # the free port may be taken between choosing and binding
            try:
                self.controller.start()
                return self
            except (OSError, RuntimeError):
                if attempt == 4:
                    raise
                self.port = free_port()
                self.controller = self._controller()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def received(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def copies(self) -> Counter[str]:
        """Recipient -> how many copies the server accepted."""
        return Counter(a.rcpt for a in self.received())


def duplicates(copies: Counter[str]) -> int:
    """Messages received more than once: every copy after a reader's first."""
    return sum(n - 1 for n in copies.values() if n > 1)
