"""A bounce mailbox over POP3 (poplib): ``pop3s://`` or ``pop3://`` with STLS.

POP3 has one folder and no flags: messages are named by their UIDL and read with ``TOP n
<all lines>`` where offered (servers such as Dovecot mark a RETR'd message read, never a
TOP'd one), else ``RETR``. Reports are deleted (DELE) once recorded, which the server carries
out when the connection ends with QUIT; everything else is left as it was.
"""

from __future__ import annotations

import logging
import poplib
import threading
from collections.abc import Iterator, Sequence

from weekly_mailer.bounces.mailbox_box import TIMEOUT, network_error, one_line, tls_context
from weekly_mailer.config_mailbox import MailboxUrl
from weekly_mailer.errors import MailboxError

log = logging.getLogger(__name__)
ALL_LINES = 10_000_000  # TOP's line count that means "the whole message"


class PopBox:
    """One POP3 session in the TRANSACTION state (see the module docstring)."""

    def __init__(self, url: MailboxUrl) -> None:
        self.url, self.key = url, url.key
        self._deleted = 0
        context = tls_context(url)
        try:
            if url.implicit_tls:
                self.pop: poplib.POP3 = poplib.POP3_SSL(
                    url.host, url.port, timeout=TIMEOUT, context=context
                )
            else:
                self.pop = poplib.POP3(url.host, url.port, timeout=TIMEOUT)
        except OSError as exc:
            raise network_error(url, exc) from exc
        try:
            if not url.implicit_tls:
                if "STLS" not in self._capabilities():
                    raise MailboxError(
                        f"bounce mailbox {url.host}:{url.port}: the server offers no STLS "
                        "(use pop3s://)"
                    )
                self.pop.stls(context)
            try:
                self.pop.user(url.username)
                self.pop.pass_(url.password)
            except poplib.error_proto as exc:
                raise MailboxError(
                    f"bounce mailbox {url.key}: login refused ({one_line(exc)})"
                ) from exc
            self.top = "TOP" in self._capabilities()
            _resp, lines, _size = self.pop.uidl()
            self.numbers: dict[str, int] = {}
            for line in lines:
                number, _, uid = line.decode("ascii", "replace").partition(" ")
                self.numbers[uid.strip()] = int(number)
        except poplib.error_proto as exc:
            self._drop()
            raise MailboxError(f"bounce mailbox {url.key}: {one_line(exc)}") from exc
        except OSError as exc:
            self._drop()
            raise network_error(url, exc) from exc
        except MailboxError:
            self._drop()
            raise

    def _capabilities(self) -> dict[str, list[str]]:
        try:
            return self.pop.capa()
        except poplib.error_proto:
            return {}

    def keys(self) -> list[str]:
        return sorted(self.numbers, key=self.numbers.__getitem__)

    def read(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        for key in keys:
            number = self.numbers[key]
            try:
                if self.top:
                    _resp, lines, _size = self.pop.top(number, ALL_LINES)
                else:
                    _resp, lines, _size = self.pop.retr(number)
            except poplib.error_proto as exc:
                raise MailboxError(f"bounce mailbox {self.key}: {one_line(exc)}") from exc
            except OSError as exc:
                raise network_error(self.url, exc) from exc
            yield key, b"\r\n".join(lines) + b"\r\n"

    def done(self, keys: Sequence[str]) -> None:
        for key in keys:
            try:
                self.pop.dele(self.numbers[key])
                self._deleted += 1
            except poplib.error_proto as exc:
                raise MailboxError(f"bounce mailbox {self.key}: {one_line(exc)}") from exc
            except OSError as exc:
                raise network_error(self.url, exc) from exc

    def wait(self, seconds: float, stop: threading.Event) -> bool | None:
        return None  # POP3 has no IDLE: the caller polls

    def close(self) -> None:
        try:
            self.pop.quit()  # the DELEs take effect here
        except (OSError, poplib.error_proto) as exc:
            self._drop()
            if self._deleted:
                log.warning(
                    "bounce mailbox %s: the server did not end the session (%s): %d reports "
                    "recorded but not deleted yet; the next read deletes them",
                    self.key, one_line(exc), self._deleted,
                )  # fmt: skip

    def _drop(self) -> None:
        try:
            self.pop.close()
        except OSError:
            pass
