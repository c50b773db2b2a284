"""The contract of a bounce mailbox as ``bounces.mailbox`` sees it: keys, read, done, wait.

One file per protocol implements it (:mod:`.mailbox_imap`, :mod:`.mailbox_pop`); each maps its
library's errors (``socket``, ``ssl``, ``imaplib``/``imapclient``, ``poplib``) to a one-line
:class:`~weekly_mailer.errors.MailboxError` at its boundary and nowhere else.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

from weekly_mailer.config_mailbox import MailboxUrl
from weekly_mailer.errors import ConfigError, MailboxError

TIMEOUT = 60.0  # seconds for a connection, a command, a reply


class Box(Protocol):
    """One open connection to a bounce mailbox (a folder of IMAP, a POP3 maildrop)."""

    key: str  # the mailbox's URL without the password: progress is kept under it

    def keys(self) -> list[str]:
        """The key of every message there now, oldest first (``UIDVALIDITY:UID``, a UIDL)."""
        ...

    def read(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """(key, bytes) of each message, read without marking it read."""
        ...

    def done(self, keys: Sequence[str]) -> None:
        """These messages are recorded reports: moved to the processed folder (IMAP) or
        deleted (POP3, when the connection closes)."""
        ...

    def wait(self, seconds: float, stop: threading.Event) -> bool | None:
        """Wait up to ``seconds`` for new mail (IMAP IDLE): True when some came, False when
        not; None at once when the server offers no IDLE."""
        ...

    def close(self) -> None:
        """Log out (POP3: the deletions take effect); never raises."""
        ...


def tls_context(url: MailboxUrl) -> ssl.SSLContext:
    """The TLS context of the mailbox: the system's CAs, plus ``cafile``; ``verify=false``
    accepts any certificate."""
    try:
        context = ssl.create_default_context(cafile=url.cafile or None)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"bounce_mailbox: cafile={url.cafile!r} cannot be read: {reason}"
        ) from exc
    if not url.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def network_error(url: MailboxUrl, exc: BaseException) -> MailboxError:
    """A ``socket``/``ssl`` error as one line naming the server."""
    where = f"{url.host}:{url.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return MailboxError(
            f"bounce mailbox {where}: its TLS certificate is not trusted "
            f"({exc.verify_message}); name the CA with ?cafile=PATH in bounce_mailbox"
        )
    if isinstance(exc, ssl.SSLError):
        return MailboxError(f"bounce mailbox {where}: TLS failed ({exc.reason or exc})")
    if isinstance(exc, socket.timeout | TimeoutError):
        return MailboxError(f"bounce mailbox {where}: no answer within {TIMEOUT:g} s")
    if isinstance(exc, socket.gaierror):
        return MailboxError(f"bounce mailbox {where}: unknown host ({exc.strerror})")
    if isinstance(exc, OSError):
        return MailboxError(f"bounce mailbox {where}: cannot connect ({exc.strerror or exc})")
    return MailboxError(f"bounce mailbox {where}: {one_line(exc)}")


def one_line(exc: BaseException) -> str:
    """A server's or library's error text, decoded, on one line, bounded."""
    text = " ".join(
        a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in exc.args
    )
    text = " ".join(text.split()) or type(exc).__name__
    if text[:2] in ("b'", 'b"') and text[-1:] == text[1]:  # imapclient's str() of a reply's bytes
        text = text[2:-1]
    return text[:300]
