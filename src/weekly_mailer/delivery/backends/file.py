"""The file backend: one ``.eml`` file per message, written atomically and durably (temp file,
fsync, rename, fsync of the folder).

``file://./outbox`` is a folder relative to the working directory, ``file:///var/mail/out`` an
absolute one. A message is named after its Message-ID, so a retry replaces the same file. A
full disk is an outage (``BackendUnavailableError``): the half-written temporary file is
removed, the message is not recorded, and the send resumes once there is room.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from weekly_mailer.delivery.backends.base import BackendUnavailableError, Envelope, SendResult
from weekly_mailer.errors import ConfigError

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]+")
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})  # no room: the disk, or the user's quota


def folder_from_url(url: str) -> Path:
    """The folder a ``file://`` URL names (``file://./x`` relative, ``file:///x`` absolute)."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise ConfigError(f"backend_url: {url!r} is not a file:// URL")
    path = unquote(parts.netloc + parts.path) if parts.netloc else unquote(parts.path)
    if not path:
        raise ConfigError(f"backend_url: {url!r} names no folder")
    return Path(path)


def file_name(envelope: Envelope) -> str:
    """A safe file name for the message: its Message-ID when it has one."""
    key = envelope.message_id.strip("<>") or uuid.uuid4().hex
    return _UNSAFE.sub("_", key)[:200] + ".eml"


class FileBackend:
    """Writes each message to ``folder/<message-id>.eml``. See ``Backend``."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._ready = False

    @classmethod
    def from_url(cls, url: str) -> FileBackend:
        return cls(folder_from_url(url))

    def _ensure_folder(self) -> None:
        if not self._ready:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendUnavailableError(
                    f"cannot create the outbox folder {str(self.folder)!r}: {exc.strerror}"
                ) from exc
            self._ready = True

    def send(self, envelope: Envelope) -> SendResult:
        self._ensure_folder()
        target = self.folder / file_name(envelope)
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".eml", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(envelope.data)
                    fh.flush()
                    os.fsync(fh.fileno())  # the bytes are on disk before the name is
                os.replace(tmp, target)
                self._sync_folder()
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            if exc.errno in _FULL:  # an outage like any other: nothing written, the row waits
                raise BackendUnavailableError(
                    f"the outbox folder {str(self.folder)!r} is full ({exc.strerror}): "
                    "messages not written stay queued; free some space and send again"
                ) from exc
            raise BackendUnavailableError(f"cannot write {str(target)!r}: {exc.strerror}") from exc
        return SendResult(250, f"2.0.0 Written to {target.name}")

    def _sync_folder(self) -> None:
        """Make the rename durable (POSIX: fsync the directory; not possible on Windows)."""
        try:
            fd = os.open(self.folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def close(self) -> None:
        pass

    def __enter__(self) -> FileBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
