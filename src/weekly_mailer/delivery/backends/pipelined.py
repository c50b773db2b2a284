"""The pipelined SMTP engine, the default for ``smtp://`` and ``smtps://``: asyncio, RFC 2920.

Hand-written on purpose: :mod:`smtplib` is blocking and lock-step (one round trip per command,
four per message, one thread per connection), and aiosmtplib has no PIPELINING. Here one asyncio
event loop in a dedicated thread (uvloop when installed) drives up to ``concurrency`` persistent
connections. Per connection: EHLO, STARTTLS / implicit TLS and AUTH PLAIN or LOGIN as the URL
asks (parsed by :mod:`.smtp_url`, shared with :mod:`.smtp`); when the server offers PIPELINING,
MAIL FROM, RCPT TO and DATA go in one write and their replies are matched in order, and the
next message's three follow a message's final dot in the same write (RFC 2920 §3.1 lets the
message content open a group): one write and one wake-up a message instead of two, which is
about a third of this loop's work. Without PIPELINING, one command at a time. Message bytes go
out with CRLF line ends and dot-stuffed. After ``max_per_connection`` messages a connection is
replaced.

Timeouts follow RFC 5321 §4.5.3.2: ``smtp_timeout`` for connecting, the greeting, EHLO, TLS and
AUTH; ``smtp_command_timeout`` (5 min) for MAIL and RCPT; ``smtp_data_init_timeout`` (2 min) for
DATA; ``smtp_data_timeout`` (10 min) for the reply to the final dot.

Replies map to our failures through :func:`.smtp.failure_for` (one table for both engines). A
connection lost or timed out before the final dot was sent costs nothing: the message is tried
once more on a fresh connection. Lost after the dot, the delivery is in doubt: a
``TemporaryFailure`` (retried later with the same Message-ID), never reported as sent; the
next message, whose commands went with that dot, got no 354 and so was not delivered: it is
tried once more elsewhere, as is a next message after a 421 to the dot.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import importlib
import socket
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from weekly_mailer.delivery.backends.base import (
    BackendBusyError,
    BackendUnavailableError,
    Envelope,
    SendResult,
)
from weekly_mailer.delivery.backends.smtp import RESTORE_AFTER, failure_for
from weekly_mailer.delivery.backends.smtp_session import (
    Connection,
    Lost,
    address_line,
    open_session,
    wire_data,
)
from weekly_mailer.delivery.backends.smtp_url import SmtpTarget, parse_smtp_url
from weekly_mailer.errors import DeliveryError, TemporaryFailure

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

Result = SendResult | DeliveryError


@dataclasses.dataclass
class _Batch:
    envelopes: Sequence[Envelope]
    results: list[Result | None]
    queue: collections.deque[int]
    retried: set[int] = dataclasses.field(default_factory=set)
    halt: DeliveryError | None = None  # the sender is refused: nothing more goes
    last_error: DeliveryError | None = None  # why a connection could not be opened


class PipelinedSMTPBackend:
    """The ``Backend`` contract plus :meth:`send_batch`. Thread-safe: batches from several
    threads share the connections (at most ``concurrency`` at once)."""

    def __init__(
        self,
        target: SmtpTarget,
        *,
        concurrency: int = 8,
        max_per_connection: int = 1000,
        connect_timeout: float = 30.0,
        command_timeout: float = 300.0,
        data_init_timeout: float = 120.0,
        data_timeout: float = 600.0,
    ) -> None:
        self.target = target
        self.where = f"{target.host}:{target.port}"
        self.concurrency = max(1, concurrency)
        self.cap = self.concurrency  # fewer after a busy greeting, climbing back
        self.max_per_connection = max(1, max_per_connection)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.data_init_timeout = data_init_timeout
        self.data_timeout = data_timeout
        self.connections_opened = 0
        self._since_shrink = 0
        self._idle: list[Connection] = []
        self._in_use: set[Connection] = set()
        self._slots: asyncio.Semaphore | None = None
        self._local_hostname: str | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._aborted = False
        self._closed = False

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> PipelinedSMTPBackend:
        """Build from an ``smtp://`` / ``smtps://`` URL and the settings' timeouts and sizes."""
        return cls(
            parse_smtp_url(url),
            concurrency=settings.concurrency,
            max_per_connection=settings.max_per_connection,
            connect_timeout=settings.smtp_timeout,
            command_timeout=settings.smtp_command_timeout,
            data_init_timeout=settings.smtp_data_init_timeout,
            data_timeout=settings.smtp_data_timeout,
        )

    # -- the loop thread ------------------------------------------------------------------------

    def submit_batch(
        self, envelopes: Sequence[Envelope]
    ) -> concurrent.futures.Future[list[Result]]:
        """Start sending a batch and return at once: the future gives what :meth:`send_batch`
        returns. Batches submitted together share the connections, so a second batch fills the
        connections the first one's tail leaves idle."""
        with self._lock:
            if self._closed:
                raise TemporaryFailure("not sent: the SMTP backend is closed")
            if self._loop is None:
                try:
                    loop = importlib.import_module("uvloop").new_event_loop()
                except ImportError:
                    loop = asyncio.new_event_loop()
                self._loop = loop
                self._thread = threading.Thread(
                    target=loop.run_forever, name="smtp-pipelined", daemon=True
                )
                self._thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(self._send_batch(envelopes), loop)

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Result]:
        """One result per envelope, in order: a ``SendResult`` or the ``DeliveryError`` that
        ``send`` would have raised. The batch is spread over the connections."""
        if not envelopes:
            return []
        return self.submit_batch(envelopes).result()

    def send(self, envelope: Envelope) -> SendResult:
        result = self.submit_batch([envelope]).result()[0]
        if isinstance(result, DeliveryError):
            raise result
        return result

    def abort(self) -> None:
        """Cut the messages in flight now (a second Ctrl-C)."""
        self._aborted = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._abandon_all)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._quit_all(), loop).result(timeout=10)
        except (concurrent.futures.TimeoutError, OSError):
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()

    def __enter__(self) -> PipelinedSMTPBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _abandon_all(self) -> None:
        for conn in list(self._in_use):
            conn.abandon()

    async def _quit_all(self) -> None:
        """QUIT every idle connection at once (after an abort, just drop them)."""
        idle, self._idle = self._idle, []

        async def quit(conn: Connection) -> None:
            try:
                if not self._aborted:
                    await conn.command(b"QUIT\r\n", 5)
            except Lost:
                pass
            conn.abandon()

        await asyncio.gather(*(quit(conn) for conn in idle))

    # -- batches --------------------------------------------------------------------------------

    async def _send_batch(self, envelopes: Sequence[Envelope]) -> list[Result]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        batch = _Batch(envelopes, [None] * len(envelopes), collections.deque(range(len(envelopes))))
        lanes = min(self.cap, len(envelopes))
        await asyncio.gather(*(self._lane(batch, self._slots) for _ in range(lanes)))
        leftover = batch.halt or batch.last_error or TemporaryFailure("not sent: cut short")
        return [leftover if r is None else r for r in batch.results]

    async def _lane(self, batch: _Batch, slots: asyncio.Semaphore) -> None:
        """One connection's share: take the next message until the batch is done."""
        async with slots:
            conn: Connection | None = None
            ahead: int | None = None  # its MAIL, RCPT and DATA went out with the last message
            try:
                while (batch.queue or ahead is not None) and batch.halt is None:
                    if self._aborted:
                        break
                    if ahead is None and (
                        conn is None or conn.broken or conn.count >= self.max_per_connection
                    ):
                        if conn is not None:
                            await self._retire(conn)
                        conn = None
                        try:
                            conn = await self._checkout()
                        except DeliveryError as exc:
                            batch.last_error = exc
                            return
                        continue
                    assert conn is not None
                    i, sent = (ahead, True) if ahead is not None else (batch.queue.popleft(), False)
                    ahead = await self._one(batch, conn, i, sent=sent)
            finally:
                if conn is not None:
                    self._in_use.discard(conn)
                    if ahead is not None:  # its replies are still due: nobody may reuse this
                        conn.broken = True
                    if conn.broken or self._closed or self._aborted:
                        conn.abandon()
                    else:
                        self._idle.append(conn)

    async def _one(self, batch: _Batch, conn: Connection, i: int, *, sent: bool) -> int | None:
        """Send message ``i`` (its commands already ``sent`` with the previous message's data);
        returns the next message whose commands went out with this one's data, if any."""
        ahead: list[int] = []

        def take_next() -> bytes:
            """With PIPELINING, the next message's MAIL, RCPT and DATA may follow this one's
            final dot in the same write (RFC 2920 §3.1): one write and one read a message."""
            if (
                not conn.pipelining
                or not batch.queue
                or batch.halt is not None
                or self._aborted
                or conn.count + 1 >= self.max_per_connection
            ):
                return b""
            j = batch.queue.popleft()
            ahead.append(j)
            return _commands(batch.envelopes[j])

        try:
            result = await self._transact(conn, batch.envelopes[i], sent=sent, follow=take_next)
        except Lost as exc:
            conn.abandon()
            for j in ahead:  # its DATA was never answered: nothing of it was delivered
                self._again(batch, j, exc)
            ahead.clear()
            if exc.in_doubt:
                result = TemporaryFailure(
                    f"connection lost after the message was sent ({exc}): delivery in doubt, "
                    "retried later with the same Message-ID"
                )
            elif not self._again(batch, i, exc):
                return None
            else:
                result = TemporaryFailure(f"connection lost: {exc}")
        if isinstance(result, BackendUnavailableError):
            batch.halt = result
        elif isinstance(result, SendResult) and self.cap < self.concurrency:
            self._since_shrink += 1
            if self._since_shrink >= RESTORE_AFTER:  # the server copes again: one more
                self.cap, self._since_shrink = self.cap + 1, 0
        batch.results[i] = result
        if ahead and conn.broken:  # a 421 after the dot: the server is closing
            for j in ahead:
                self._again(batch, j, Lost("the server closed the connection"))
            return None
        return ahead[0] if ahead else None

    @staticmethod
    def _again(batch: _Batch, i: int, exc: Lost) -> bool:
        """Put message ``i``, which was not delivered, back in the queue to be tried once more
        on another connection (``True``); a second time it fails (``False``, with its result)."""
        if i not in batch.retried:
            batch.retried.add(i)
            batch.queue.appendleft(i)
            return False
        batch.results[i] = TemporaryFailure(f"connection lost: {exc}")
        return True

    async def _transact(
        self,
        conn: Connection,
        envelope: Envelope,
        *,
        sent: bool = False,
        follow: Callable[[], bytes] = bytes,
    ) -> Result:
        data_reply: tuple[int, str] | None = None
        rcpt_reply: tuple[int, str] | None = None
        if conn.pipelining:
            if not sent:
                conn.writer.write(_commands(envelope))
            mail_reply = (await conn.reply(self.command_timeout))[:2]
            if mail_reply[0] != 421:  # after 421 the server closes: no more replies come
                rcpt_reply = (await conn.reply(self.command_timeout))[:2]
            if rcpt_reply is not None and rcpt_reply[0] != 421:
                data_reply = (await conn.reply(self.data_init_timeout))[:2]
        else:
            mail_reply = await conn.command(
                address_line(b"MAIL FROM", envelope.sender), self.command_timeout
            )
            if mail_reply[0] == 250:
                rcpt_reply = await conn.command(
                    address_line(b"RCPT TO", envelope.recipient), self.command_timeout
                )
                if rcpt_reply[0] in (250, 251):
                    data_reply = await conn.command(b"DATA\r\n", self.data_init_timeout)
        failure: DeliveryError | None = None
        if mail_reply[0] != 250:
            code, text = mail_reply
            failure = failure_for(code, text)
            if 500 <= code <= 599:  # the sender is refused: the same for every recipient
                failure = BackendUnavailableError(
                    f"the SMTP server {self.where} refused the sender {envelope.sender}: {failure}"
                )
        elif rcpt_reply is not None and rcpt_reply[0] not in (250, 251):
            failure = failure_for(*rcpt_reply)
        elif data_reply is not None and data_reply[0] != 354:
            failure = failure_for(*data_reply, stage="data")
        if failure is not None:
            await self._recover(conn, failure, data_reply)
            return failure
        payload = envelope.data + b".\r\n" if envelope.wire_safe else wire_data(envelope.data)
        conn.writer.write(payload + follow())
        code, text, _ = await conn.reply(self.data_timeout, in_doubt=True)
        conn.count += 1
        if code != 250:
            failure = failure_for(code, text, stage="data")
            conn.broken = conn.broken or code == 421
            return failure
        return SendResult(code, text)

    async def _recover(
        self, conn: Connection, failure: DeliveryError, data_reply: tuple[int, str] | None
    ) -> None:
        """After a refused command: finish a DATA the server accepted anyway, then RSET; the
        connection goes on unless the server said 421 or does not answer."""
        if failure.code == 421 or (data_reply is not None and data_reply[0] == 421):
            conn.broken = True
            return
        try:
            if data_reply is not None and data_reply[0] == 354:  # RFC 2920 §3.1: empty message
                await conn.command(b".\r\n", self.data_timeout)
            code, _ = await conn.command(b"RSET\r\n", self.command_timeout)
        except Lost:
            code = 0  # the failure stands; this connection does not
        if code != 250:
            conn.broken = True

    # -- connections ----------------------------------------------------------------------------

    async def _checkout(self) -> Connection:
        if self._idle:
            conn = self._idle.pop()
        else:
            if self._local_hostname is None:  # one FQDN lookup per backend
                loop = asyncio.get_running_loop()
                self._local_hostname = await loop.run_in_executor(None, socket.getfqdn)
            try:
                conn = await open_session(
                    self.target, timeout=self.connect_timeout, local_hostname=self._local_hostname
                )
            except BackendBusyError:  # "too many connections": use as many as work now
                self.cap, self._since_shrink = max(1, len(self._in_use)), 0
                raise
            self.connections_opened += 1
        self._in_use.add(conn)
        return conn

    async def _retire(self, conn: Connection) -> None:
        self._in_use.discard(conn)
        if not conn.broken:
            try:
                await conn.command(b"QUIT\r\n", self.connect_timeout)
            except Lost:
                pass
        conn.abandon()


def _commands(envelope: Envelope) -> bytes:
    """MAIL FROM, RCPT TO and DATA for one message, to go out in one write."""
    return (
        address_line(b"MAIL FROM", envelope.sender)
        + address_line(b"RCPT TO", envelope.recipient)
        + b"DATA\r\n"
    )
