"""The SMTP backend: a pool of reusable connections, mapping replies to our own failures.

``smtp://user:pass@host:587?starttls=true`` or ``smtps://user:pass@host:465`` (options: see
:mod:`.smtp_url`; ``?engine=smtplib`` picks this engine; the default is :mod:`.pipelined`).
Timeouts, pool size and the per-connection message cap come from the settings
(``smtp_timeout``, ``concurrency``, ``max_per_connection``).

Errors are translated here and nowhere else::

    421, 450-454          TemporaryFailure(throttle=True)   retry later; 421 and 4.7.x pause the
                                                            whole send, the others slow it down
    5xx saying throttling TemporaryFailure(throttle=True)   a relay's quota ("Throttling failure",
                                                            "sending quota exceeded"): never a
                                                            failure (``base.RELAY_THROTTLE``)
    other 4xx, drops      TemporaryFailure                  retry later with backoff
    5xx to RCPT TO        PermanentFailure                  never retried; whether it is a hard
                                                            bounce is the classifier's call
                                                            (``delivery.results.counts_as_bounce``)
    5xx after DATA        NotABounce                        never retried, not a bounce (policy)
    5xx to MAIL FROM      BackendUnavailableError           the sender is refused: stop the send
    4xx greeting          BackendBusyError                  hand the row back, pause, fewer
                                                            connections
    cannot connect/login  BackendUnavailableError           nothing attempted; rows handed back
    a reply before its    TemporaryFailure                  the connection is dropped (the
      command was written                                   session is out of step: see
                                                            :mod:`.smtp_replies`)
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
from typing import TYPE_CHECKING

from weekly_mailer.delivery.backends.base import (
    BackendBusyError,
    BackendUnavailableError,
    Envelope,
    NotABounce,
    SendResult,
    relay_throttle,
)
from weekly_mailer.delivery.backends.smtp_replies import InStepSMTP, InStepSMTP_SSL
from weekly_mailer.delivery.backends.smtp_url import parse_smtp_url
from weekly_mailer.errors import DeliveryError, PermanentFailure, TemporaryFailure

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

THROTTLE_CODES = frozenset({421, 450, 451, 452, 453, 454})
RESTORE_AFTER = 50  # messages accepted after a busy greeting before one more connection


def failure_for(code: int, reply: str | bytes, *, stage: str = "rcpt") -> DeliveryError:
    """Our failure for an SMTP reply code at ``stage`` (``rcpt`` or ``data``); see the module
    docstring. A 5xx to RCPT TO is a ``PermanentFailure`` with the full reply: what it means
    for the reader (hard, soft, block…) is decided above the backends, by the classifier."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    text = " ".join(text.split())
    message = f"{code} {text}".strip()
    if 500 <= code <= 599 and relay_throttle(text):  # a relay's quota, said with a 5xx
        return TemporaryFailure(message, code=code, throttle=True)
    if 500 <= code <= 599:
        if stage == "rcpt":
            return PermanentFailure(message, code=code)
        return NotABounce(message, code=code)
    return TemporaryFailure(message, code=code, throttle=code in THROTTLE_CODES)


class _Connection:
    __slots__ = ("smtp", "count")

    def __init__(self, smtp: smtplib.SMTP) -> None:
        self.smtp = smtp
        self.count = 0

    def close(self) -> None:
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            try:
                self.smtp.close()
            except OSError:
                pass


class SMTPBackend:
    """Sends over up to ``pool_size`` SMTP connections, reused. See ``Backend``.

    Thread-safe: each connection serves one thread at a time. A pooled connection found dead
    before anything was sent is replaced once, silently; a drop after the message was sent is a
    ``TemporaryFailure`` (the server may or may not have it: a retry keeps the same Message-ID).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        implicit_tls: bool = False,
        starttls: bool = False,
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        pool_size: int = 2,
        max_per_connection: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout = timeout
        self.pool_size = max(1, pool_size)
        self.max_per_connection = max(1, max_per_connection)
        self.ssl_context = ssl_context
        self.connections_opened = 0
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.Condition(self._lock)
        self._busy = 0  # sends under way
        self.cap = self.pool_size  # connections we may use now (fewer after a busy greeting)
        self._since_shrink = 0
        self._in_use: set[_Connection] = set()
        self._aborted = False
        self._closed = False
        self._local_hostname = local_hostname  # the EHLO name; None: the host's FQDN, looked up

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> SMTPBackend:
        """Build from ``smtp://`` / ``smtps://`` URL (see :mod:`.smtp_url`) and the settings'
        timeouts and pool size."""
        target = parse_smtp_url(url)
        return cls(
            target.host,
            target.port,
            implicit_tls=target.implicit_tls,
            starttls=target.starttls,
            username=target.username,
            password=target.password,
            timeout=settings.smtp_timeout,
            pool_size=settings.concurrency,
            max_per_connection=settings.max_per_connection,
            ssl_context=target.ssl_context,
            local_hostname=settings.helo_name,
        )

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> _Connection:
        where = f"{self.host}:{self.port}"
        smtp: smtplib.SMTP | None = None
        if self._local_hostname is None:  # one FQDN lookup per backend, not per connection
            self._local_hostname = socket.getfqdn()
        name = self._local_hostname
        try:
            if self.implicit_tls:
                smtp = InStepSMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=name,
                    timeout=self.timeout,
                    context=self.ssl_context,
                )
            else:
                smtp = InStepSMTP(self.host, self.port, local_hostname=name, timeout=self.timeout)
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password)
        except smtplib.SMTPConnectError as exc:
            self._abandon(smtp)
            if 400 <= exc.smtp_code <= 499:
                self._shrink()
                reply = failure_for(exc.smtp_code, exc.smtp_error)
                raise BackendBusyError(
                    f"the SMTP server {where} is busy: {reply}",
                    code=exc.smtp_code,
                    throttle=True,
                ) from exc
            raise BackendUnavailableError(
                f"the SMTP server {where} refused the connection: "
                f"{failure_for(exc.smtp_code, exc.smtp_error)}"
            ) from exc
        except smtplib.SMTPAuthenticationError as exc:
            self._abandon(smtp)
            raise BackendUnavailableError(
                f"the SMTP server {where} refused the login: "
                f"{failure_for(exc.smtp_code, exc.smtp_error)}"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._abandon(smtp)
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise BackendUnavailableError(
                f"cannot open an SMTP connection to {where}: {reason}"
            ) from exc
        with self._lock:
            self.connections_opened += 1
        return _Connection(smtp)

    @staticmethod
    def _abandon(smtp: smtplib.SMTP | None) -> None:
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass

    def _acquire(self) -> None:
        with self._slots:
            while self._busy >= self.cap:
                self._slots.wait()
            self._busy += 1

    def _release(self, ok: bool) -> None:
        with self._slots:
            self._busy -= 1
            if ok and self.cap < self.pool_size:
                self._since_shrink += 1
                if self._since_shrink >= RESTORE_AFTER:  # the server copes again: one more
                    self.cap, self._since_shrink = self.cap + 1, 0
            self._slots.notify()

    def _shrink(self) -> None:
        """A 4xx greeting ("too many connections"): use as many connections as work now."""
        with self._slots:
            self.cap = max(1, self._busy - 1)
            self._since_shrink = 0
            extra = self._idle[self.cap :]
            del self._idle[self.cap :]
        for conn in extra:
            conn.close()

    def _checkout(self) -> tuple[_Connection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _checkin(self, conn: _Connection) -> None:
        if conn.count >= self.max_per_connection or self._closed:
            conn.close()
            return
        with self._lock:
            self._idle.append(conn)

    # -- sending ------------------------------------------------------------------------------

    def send(self, envelope: Envelope) -> SendResult:
        self._acquire()
        ok = False
        try:
            result = self._send(envelope)
            ok = True
            return result
        finally:
            self._release(ok)

    def _send(self, envelope: Envelope) -> SendResult:
        if self._aborted:
            raise TemporaryFailure("not sent: the send was cut short")
        conn, reused = self._checkout()
        with self._lock:
            self._in_use.add(conn)
        try:
            code, reply = conn.smtp.mail(envelope.sender)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # A pooled connection the server closed while idle: nothing was sent yet.
            self._abandon(conn.smtp)
            with self._lock:
                self._in_use.discard(conn)
            if not reused or self._aborted:
                raise TemporaryFailure("connection lost before MAIL FROM") from exc
            conn = self._connect()
            with self._lock:
                self._in_use.add(conn)
            code, reply = self._mail(conn, envelope)
        keep = True
        try:
            if 500 <= code <= 599:  # the sender is refused: the same for every recipient
                raise BackendUnavailableError(
                    f"the SMTP server {self.host}:{self.port} refused the sender "
                    f"{envelope.sender}: {failure_for(code, reply)}"
                )
            if code != 250:
                raise failure_for(code, reply)
            code, reply = conn.smtp.rcpt(envelope.recipient)
            if code not in (250, 251):
                raise failure_for(code, reply)
            code, reply = conn.smtp.data(envelope.data)
            conn.count += 1
            if code != 250:
                keep = code != 421
                raise failure_for(code, reply, stage="data")
            return SendResult(code, reply.decode("utf-8", "replace"))
        except smtplib.SMTPResponseException as exc:  # DATA refused (smtplib wants its 354)
            keep = exc.smtp_code != 421 and self._reset(conn)  # else the next MAIL is "nested"
            raise failure_for(exc.smtp_code, exc.smtp_error, stage="data") from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            keep = False
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise TemporaryFailure(f"connection lost: {reason}") from exc
        except smtplib.SMTPException as exc:
            keep = False
            raise TemporaryFailure(f"SMTP error: {exc}") from exc
        except DeliveryError as exc:
            if exc.code == 421:
                keep = False  # the server is closing this connection
            elif keep:
                keep = self._reset(conn)
            raise
        finally:
            with self._lock:
                self._in_use.discard(conn)
            if keep and not self._aborted:
                self._checkin(conn)
            else:
                self._abandon(conn.smtp)

    def _mail(self, conn: _Connection, envelope: Envelope) -> tuple[int, bytes]:
        try:
            return conn.smtp.mail(envelope.sender)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._abandon(conn.smtp)
            with self._lock:
                self._in_use.discard(conn)
            raise TemporaryFailure("connection lost before MAIL FROM") from exc

    @staticmethod
    def _reset(conn: _Connection) -> bool:
        try:
            code, _ = conn.smtp.rset()
        except (smtplib.SMTPException, OSError):
            return False
        return code == 250

    def abort(self) -> None:
        """Cut the messages in flight now (a second Ctrl-C): shut their sockets down."""
        self._aborted = True
        with self._lock:
            busy = list(self._in_use)
        for conn in busy:
            sock = conn.smtp.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> SMTPBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
