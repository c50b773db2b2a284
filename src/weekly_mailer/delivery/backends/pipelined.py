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
from collections.abc import Sequence
from typing import TYPE_CHECKING

from weekly_mailer.delivery.backends.base import (
    BackendBusyError,
    BackendUnavailableError,
    Envelope,
    Fence,
    Receipts,
    SendResult,
)
from weekly_mailer.delivery.backends.smtp import RESTORE_AFTER
from weekly_mailer.delivery.backends.smtp_session import Connection, Lost, open_session
from weekly_mailer.delivery.backends.smtp_transaction import (
    LEASE_LOST,
    Timeouts,
    commands,
    transact,
)
from weekly_mailer.delivery.backends.smtp_url import SmtpTarget, parse_smtp_url
from weekly_mailer.errors import DeliveryError, LeaseLostError, TemporaryFailure

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
    fence: Fence | None = None  # asked before each message goes on the wire
    receipts: Receipts | None = None  # told of each acceptance as it arrives

    def held(self, i: int) -> bool:
        """Whether message ``i`` may go on the wire (else its result is ``LeaseLostError``)."""
        if self.fence is None or self.fence.holds(self.envelopes[i]):
            return True
        self.results[i] = LeaseLostError(LEASE_LOST)
        return False


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
        local_hostname: str | None = None,
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
        self.timeouts = Timeouts(command_timeout, data_init_timeout, data_timeout)
        self.connections_opened = 0
        self._since_shrink = 0
        self._idle: list[Connection] = []
        self._in_use: set[Connection] = set()
        self._slots: asyncio.Semaphore | None = None
        self._local_hostname = local_hostname  # the EHLO name; None: the host's FQDN, looked up
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
            local_hostname=settings.helo_name,
        )

    # -- the loop thread ------------------------------------------------------------------------

    def submit_batch(
        self,
        envelopes: Sequence[Envelope],
        *,
        fence: Fence | None = None,
        receipts: Receipts | None = None,
    ) -> concurrent.futures.Future[list[Result]]:
        """Start sending a batch and return at once: the future gives what :meth:`send_batch`
        returns. Batches submitted together share the connections, so a second batch fills the
        connections the first one's tail leaves idle. ``fence`` and ``receipts``: see
        ``base.BatchBackend``."""
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
        coroutine = self._send_batch(envelopes, fence, receipts)
        return asyncio.run_coroutine_threadsafe(coroutine, loop)

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

    async def _send_batch(
        self, envelopes: Sequence[Envelope], fence: Fence | None, receipts: Receipts | None
    ) -> list[Result]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        order = collections.deque(range(len(envelopes)))
        batch = _Batch(envelopes, [None] * len(envelopes), order, fence=fence, receipts=receipts)
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
                    if not sent and not batch.held(i):
                        continue  # nothing of it went out
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
            j = batch.queue[0]
            if not batch.held(j):
                return b""  # the lane takes it next and finds it lost
            batch.queue.popleft()
            ahead.append(j)
            return commands(batch.envelopes[j])

        try:
            result = await transact(
                conn, batch.envelopes[i], self.timeouts, where=self.where, sent=sent,
                follow=take_next, fence=batch.fence, receipts=batch.receipts,
            )  # fmt: skip
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
