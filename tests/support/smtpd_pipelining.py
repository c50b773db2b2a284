"""An aiosmtpd server that can advertise PIPELINING and records every read it makes.

aiosmtpd reads pipelined commands fine but never offers the extension; ``PipeliningServer``
adds ``250-PIPELINING`` to EHLO when asked, records each chunk the server read (per connection),
and can be slow to answer the final dot or answer MAIL FROM with a reply of the test's choosing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.smtpd import Faults, SMTPServer, _Handler


class _PipeliningHandler(_Handler):
    server: PipeliningServer

    async def handle_EHLO(
        self, srv: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.server.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, srv: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.server.mail_reply:
            return self.server.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, srv: SMTP, session: Session, envelope: Envelope) -> str:
        if self.server.slow_data:
            await asyncio.sleep(self.server.slow_data)
        return await super().handle_DATA(srv, session, envelope)


class _RecordingSMTP(SMTP):
    def __init__(self, handler: Any, recorder: PipeliningServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._recorder = recorder

    def data_received(self, data: bytes) -> None:
        with self._recorder.lock:
            self._recorder.reads.append((id(self), data))
        super().data_received(data)


class _RecordingController(Controller):
    def __init__(self, handler: Any, recorder: PipeliningServer, **kwargs: Any) -> None:
        self._recorder = recorder
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        return _RecordingSMTP(self.handler, self._recorder, **self.SMTP_kwargs)


class PipeliningServer(SMTPServer):
    """``SMTPServer`` plus ``pipelining`` (offer RFC 2920), ``reads`` (``(connection, bytes)``
    per read), ``slow_data`` (seconds before answering the final dot), ``mail_reply``."""

    def __init__(
        self,
        faults: Faults | None = None,
        *,
        pipelining: bool = True,
        slow_data: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.pipelining = pipelining
        self.slow_data = slow_data
        self.mail_reply = ""  # e.g. "550 5.7.1 Sender not allowed" for every MAIL FROM
        self.reads: list[tuple[int, bytes]] = []
        super().__init__(faults, **kwargs)

    def _controller(self) -> Controller:
        return _RecordingController(
            _PipeliningHandler(self),
            self,
            hostname="127.0.0.1",
            port=self.port,
            ready_timeout=10,
            **self._kwargs,
        )

    def command_reads(self) -> list[bytes]:
        """The commands of each read, in order: a read that is all commands, or the commands
        that followed a message's final dot in the same read (RFC 2920 allows that)."""
        with self.lock:
            chunks = [data for _, data in self.reads]
        commands = [c.rpartition(b"\r\n.\r\n")[2] if b"\r\n.\r\n" in c else c for c in chunks]
        return [c for c in commands if c[:4].upper() in (b"MAIL", b"RCPT", b"DATA", b"RSET")]

    def chained_reads(self) -> int:
        """How many reads carried a message's final dot and the next commands together."""
        with self.lock:
            chunks = [data for _, data in self.reads]
        return sum(1 for c in chunks if b"\r\n.\r\nMAIL FROM" in c)

    def connections(self) -> int:
        with self.lock:
            return len({conn for conn, _ in self.reads})
