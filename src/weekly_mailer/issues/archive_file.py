"""The file ``issues archive`` appends to: one complete gzip member per archived issue.

A gzip file may hold several members one after another; ``zcat`` and ``gzip.open`` read them as
one stream. Each issue's rows become one member whose trailer is written, flushed and fsynced
before the transaction that deletes those rows commits, so an interruption (SIGKILL, Ctrl-C, a
crash) at any moment leaves at most one incomplete member at the end of the file: one whose
rows never left the database. Opening the file again cuts that tail off before appending, so
a rerun leaves a file read whole (a file whose tail is not gzip at all is refused, never cut).
The file is created 0600: it holds every reader's address.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from typing import TextIO

from weekly_mailer.errors import IssueError

_CHUNK = 1 << 20
_MAGIC = b"\x1f\x8b"  # how every gzip member starts


def complete_length(path: str) -> int:
    """The length of the run of complete gzip members at the start of ``path`` (bytes)."""
    good = 0
    with open(path, "rb") as f:
        while True:
            f.seek(good)
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            read = 0
            while not inflater.eof:
                chunk = f.read(_CHUNK)
                if not chunk:
                    return good  # the file ends inside this member (or exactly at ``good``)
                read += len(chunk)
                try:
                    while chunk and not inflater.eof:
                        inflater.decompress(chunk, _CHUNK)
                        chunk = inflater.unconsumed_tail
                except zlib.error:
                    return good  # not a gzip member from here on
            good += read - len(inflater.unused_data) - len(chunk)


class ArchiveFile:
    """An archive file opened for appending members; see the module docstring."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise IssueError(f"{path}: cannot write it ({exc.strerror})") from exc
        self._raw = os.fdopen(fd, "r+b")
        try:
            end = complete_length(path)
            if end != os.fstat(fd).st_size:  # an interrupted member whose rows stayed behind
                self._raw.seek(end)
                if self._raw.read(2) != _MAGIC:  # not ours to cut: someone else's bytes
                    raise IssueError(
                        f"{path}: not a gzip file from byte {end} on: give another --to file"
                    )
                self._raw.truncate(end)
                os.fsync(fd)
            self._raw.seek(end)
        except BaseException:
            self._raw.close()
            raise

    @contextlib.contextmanager
    def member(self) -> Iterator[TextIO]:
        """One gzip member, complete and on disk when the block ends without an error; on an
        error it is cut off again, and the file is as it was."""
        start = self._raw.tell()
        packed = gzip.GzipFile(fileobj=self._raw, mode="wb")
        text = io.TextIOWrapper(packed, encoding="utf-8", write_through=True)
        try:
            yield text
            text.flush()
            packed.close()  # the trailer; the raw file stays open
            self._raw.flush()
            os.fsync(self._raw.fileno())
        except BaseException:
            with contextlib.suppress(Exception):
                text.close()  # whatever it still writes is cut off below
            with contextlib.suppress(OSError, ValueError):
                self._raw.seek(start)
                self._raw.truncate(start)
            raise

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> ArchiveFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
