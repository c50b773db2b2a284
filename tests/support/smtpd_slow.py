"""An aiosmtpd server whose replies take time: a per-recipient delay at DATA (an asyncio sleep,
so the other connections go on meanwhile), and the arrival time of every message kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.smtpd import Faults, SMTPServer, _Handler


class _SlowHandler(_Handler):
    server: SlowSMTPServer

    async def handle_DATA(self, srv: SMTP, session: Session, envelope: Envelope) -> str:
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        seconds = self.server.delay(rcpt)
        if seconds > 0:
            await asyncio.sleep(seconds)
        before = len(self.server.messages)
        reply = await super().handle_DATA(srv, session, envelope)
        if len(self.server.messages) > before:
            with self.server.lock:
                self.server.arrivals.append(time.monotonic())
        return reply


class SlowSMTPServer(SMTPServer):
    """``SMTPServer`` that waits ``delay(recipient)`` seconds before answering the final dot;
    ``arrivals`` holds the ``time.monotonic()`` of each accepted message, in order."""

    def __init__(
        self, delay: Callable[[str], float], faults: Faults | None = None, **kwargs: Any
    ) -> None:
        self.delay = delay
        self.arrivals: list[float] = []
        super().__init__(faults, **kwargs)

    def _controller(self) -> Controller:
        return Controller(
            _SlowHandler(self),
            hostname="127.0.0.1",
            port=self.port,
            ready_timeout=10,
            **self._kwargs,
        )
