"""A bounce mailbox over IMAP (imapclient): ``imaps://`` or ``imap://`` with STARTTLS.

Messages are read with ``BODY.PEEK[]``, so none is marked ``\\Seen``; each is named by
``UIDVALIDITY:UID``. Only reports are touched: moved to the processed folder (created when
missing) with ``UID MOVE`` (RFC 6851) where offered, else ``UID COPY``, ``\\Deleted`` on those
UIDs and ``UID EXPUNGE`` (RFC 4315) of those UIDs only; without UIDPLUS they are copied and
flagged, never expunged (a plain EXPUNGE would also remove what a person flagged). New mail is
awaited with IDLE (RFC 2177) where the server offers it. A message flagged ``\\Deleted`` counts as
gone and is never read.
"""

from __future__ import annotations

import imaplib
import logging
import threading
import time
from collections.abc import Iterator, Sequence

from imapclient import DELETED, IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from weekly_mailer.bounces.mailbox_box import TIMEOUT, network_error, one_line, tls_context
from weekly_mailer.config_mailbox import MailboxUrl
from weekly_mailer.errors import MailboxError

log = logging.getLogger(__name__)
BATCH = 25  # messages fetched per FETCH


class ImapBox:
    """One IMAP connection with the mailbox's folder selected (see the module docstring)."""

    def __init__(self, url: MailboxUrl, processed: str) -> None:
        self.url, self.processed, self.key = url, processed, url.key
        self._made_processed = False
        context = tls_context(url)
        try:
            self.client = IMAPClient(
                url.host, url.port, ssl=url.implicit_tls, ssl_context=context, timeout=TIMEOUT
            )
        except (OSError, IMAPClientError) as exc:
            raise network_error(url, exc) from exc
        try:
            if not url.implicit_tls:
                if not self.client.has_capability("STARTTLS"):
                    raise MailboxError(
                        f"bounce mailbox {url.host}:{url.port}: the server offers no STARTTLS "
                        "(use imaps://)"
                    )
                self.client.starttls(context)
            self.client.login(url.username, url.password)
            selected = self.client.select_folder(url.folder)
            self.uidvalidity = int(selected[b"UIDVALIDITY"])
        except LoginError as exc:
            self.close()
            raise MailboxError(
                f"bounce mailbox {url.key}: login refused ({one_line(exc)})"
            ) from exc
        except IMAPClientError as exc:
            self.close()
            raise MailboxError(
                f"bounce mailbox {url.key}: folder {url.folder!r} cannot be opened "
                f"({one_line(exc)})"
            ) from exc
        except OSError as exc:
            self.close()
            raise network_error(url, exc) from exc
        except MailboxError:
            self.close()
            raise

    def _guarded(self, what: str, call: object, *args: object) -> object:
        try:
            return call(*args)  # type: ignore[operator]
        except IMAPClientError as exc:
            raise MailboxError(f"bounce mailbox {self.key}: {what}: {one_line(exc)}") from exc
        except OSError as exc:
            raise network_error(self.url, exc) from exc

    def keys(self) -> list[str]:
        # A message flagged \\Deleted is gone already (a person deleted it, or we copied it
        # to the processed folder where the server offers no UIDPLUS): never read, never moved.
        uids = self._guarded("SEARCH", self.client.search, "UNDELETED")
        assert isinstance(uids, list)
        return [f"{self.uidvalidity}:{uid}" for uid in sorted(uids)]

    def _uids(self, keys: Sequence[str]) -> list[int]:
        return [int(k.partition(":")[2]) for k in keys]

    def read(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        uids = self._uids(keys)
        for start in range(0, len(uids), BATCH):
            chunk = uids[start : start + BATCH]
            found = self._guarded("FETCH", self.client.fetch, chunk, ["BODY.PEEK[]"])
            assert isinstance(found, dict)
            for uid in chunk:
                data = found.get(uid, {}).get(b"BODY[]")
                if isinstance(data, bytes):  # gone meanwhile (another reader moved it): skip
                    yield f"{self.uidvalidity}:{uid}", data

    def done(self, keys: Sequence[str]) -> None:
        uids = self._uids(keys)
        if not uids:
            return
        client = self.client
        if not self._made_processed:
            if not self._guarded("LIST", client.folder_exists, self.processed):
                self._guarded("CREATE", client.create_folder, self.processed)
                log.info("bounce mailbox %s: created folder %s", self.key, self.processed)
            self._made_processed = True
        try:
            self._move(uids)
        except MailboxError:
            # Another reader (``run`` and a ``bounces fetch`` at once) moved some of them first:
            # the server refuses the whole command (Dovecot: EXPUNGEISSUED). Move the rest.
            still = self._still_there(uids)
            if still:
                self._move(still)

    def _still_there(self, uids: list[int]) -> list[int]:
        found = self._guarded(
            "SEARCH", self.client.search, ["UID", ",".join(map(str, uids)), "UNDELETED"]
        )
        assert isinstance(found, list)
        return sorted(set(found) & set(uids))

    def _move(self, uids: list[int]) -> None:
        client = self.client
        if client.has_capability("MOVE"):
            self._guarded("MOVE", client.move, uids, self.processed)
            return
        self._guarded("COPY", client.copy, uids, self.processed)
        self._guarded("STORE", client.add_flags, uids, [DELETED], True)
        if client.has_capability("UIDPLUS"):
            self._guarded("UID EXPUNGE", client.uid_expunge, uids)
        else:
            log.warning(
                "bounce mailbox %s: the server offers neither MOVE nor UIDPLUS: %d reports "
                "copied to %s and flagged \\Deleted, left for your mail client to expunge",
                self.key, len(uids), self.processed,
            )  # fmt: skip

    def wait(self, seconds: float, stop: threading.Event) -> bool | None:
        client = self.client
        if not client.has_capability("IDLE"):
            return None
        deadline = time.monotonic() + seconds
        came, quick = False, 0
        self._guarded("IDLE", client.idle)
        try:
            while not came and not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                step, started = min(1.0, left), time.monotonic()
                replies = self._guarded("IDLE", client.idle_check, step)
                assert isinstance(replies, list)
                if any(r[:1] == (b"BYE",) for r in replies):
                    raise MailboxError(f"bounce mailbox {self.key}: the server ended the session")
                # imapclient reads a closed connection as "no news": an answer at once, again
                # and again, with nothing in it, is a connection lost.
                quick = quick + 1 if not replies and time.monotonic() - started < step / 2 else 0
                if quick >= 3:
                    raise MailboxError(f"bounce mailbox {self.key}: the connection was lost")
                came = any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in replies)
        except MailboxError:
            self.close()
            raise
        self._guarded("IDLE", client.idle_done)
        return came

    def close(self) -> None:
        try:
            self.client.logout()
        except (OSError, IMAPClientError, imaplib.IMAP4.abort, AttributeError):
            try:
                self.client.shutdown()
            except (OSError, IMAPClientError, AttributeError):
                pass
