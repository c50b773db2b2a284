"""smtplib connections for :mod:`.smtp` that refuse to write while a reply waits unread.

smtplib matches replies to commands by order alone. A server (or a proxy) that sends a reply
nobody asked for, such as an early ``250`` after its ``354``, puts every later reply one step
off: the ``250`` is taken for the final dot's answer and the message counted as delivered,
while the server's real answer to the content (a ``554``, say) is read as the reply to the next
message's MAIL FROM. Here every write first checks that nothing is waiting: what smtplib read
ahead but did not consume, and what the socket holds. If anything is, the write raises
:class:`smtplib.SMTPServerDisconnected` (the connection is dropped, what was in flight deferred).
"""

from __future__ import annotations

import select
import smtplib
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_READ = 8192


class _Replies:
    """smtplib's reply stream (``SMTP.file``), with what it holds unread visible."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self.buffer.find(b"\n") + 1
            if limit > 0 and (end == 0 or end > limit) and len(self.buffer) >= limit:
                end = limit
            if end:
                line = bytes(self.buffer[:end])
                del self.buffer[:end]
                return line
            chunk = self.sock.recv(_READ)
            if not chunk:  # end of file: what is left, then b""
                line = bytes(self.buffer)
                self.buffer.clear()
                return line
            self.buffer += chunk

    def waiting(self) -> bytes | None:
        """What the server sent that nobody has read, or ``None``; see :func:`unread`."""
        if self.buffer:
            return bytes(self.buffer)
        pending = getattr(self.sock, "pending", None)  # TLS: decrypted, not yet read
        if pending is not None and pending():
            return b""
        return unread(self.sock.fileno(), tls=pending is not None)

    def close(self) -> None:
        self.buffer.clear()


def unread(fd: int, *, tls: bool) -> bytes | None:
    """What socket ``fd`` holds unread: ``None`` when nothing (or only the end of the stream,
    or the socket is closed: the next read or write says so), else its first bytes. A TLS
    socket's bytes are records, some of them no reply at all (a session ticket after the
    handshake): there only what was decrypted counts, and the caller looks at that."""
    if fd < 0 or tls:
        return None
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    if not poll.poll(0):
        return None
    peek = socket.socket(fileno=fd)  # borrowed: detached below, never closed here
    try:
        head = peek.recv(80, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return None
    finally:
        peek.detach()
    return head or None


class _InStep:
    """Mixed into :class:`smtplib.SMTP`: see the module docstring."""

    file: Any
    sock: Any

    def getreply(self) -> tuple[int, bytes]:
        if self.file is None and self.sock is not None:
            self.file = _Replies(self.sock)
        return super().getreply()  # type: ignore[misc,no-any-return]

    def send(self, s: ReadableBuffer | str) -> None:
        replies = self.file if isinstance(self.file, _Replies) else None
        waiting = replies.waiting() if replies is not None else None
        if waiting is not None:
            raw = s.encode("ascii", "replace") if isinstance(s, str) else bytes(s)
            head = raw.split(b"\r\n", 1)[0]
            is_command = raw.endswith(b"\r\n") and raw.count(b"\r\n") == 1 and len(raw) < 600
            what = head.split(b" ", 1)[0].upper().decode("ascii", "replace") if is_command else (
                "the message content after DATA"
            )  # fmt: skip
            shown = " ".join(waiting[:60].decode("utf-8", "replace").split())
            self.close()  # type: ignore[attr-defined]
            raise smtplib.SMTPServerDisconnected(
                f"the server sent a reply before {what} was written, so its replies are out "
                f"of step: {shown or 'more data'}"
            )
        super().send(s)  # type: ignore[misc]


class InStepSMTP(_InStep, smtplib.SMTP):
    """:class:`smtplib.SMTP` that drops an out-of-step session."""


class InStepSMTP_SSL(_InStep, smtplib.SMTP_SSL):  # noqa: N801 (smtplib's own spelling)
    """:class:`smtplib.SMTP_SSL` that drops an out-of-step session."""
