"""The physical lines of a CSV subscriber file, read a block at a time with a bound on each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

MAX_ROW_BYTES = 64 * 1024  # a longer CSV line is refused unread (no subscriber row is this long)

# A physical line: its number and its text (bytes until decoded, in the worker; ``None`` for a
# line over MAX_ROW_BYTES, never read whole).
Line = tuple[int, bytes | str | None]


def byte_lines(
    head: bytes, stream: IO[bytes], *, block: int = 1 << 20, limit: int = MAX_ROW_BYTES
) -> Iterator[Line]:
    """Physical lines of ``head`` and then ``stream``, numbered as ``\\r\\n``, ``\\r`` and
    ``\\n`` end them.

    A line longer than ``limit`` bytes comes as ``(number, None)`` as soon as that is known, and
    the rest of it is skipped unread into memory: at most ``limit`` plus one block is held."""
    number = 0
    pending = head
    overlong = False  # inside a line already reported too long: drop bytes until its end

    def pieces(part: bytes) -> Iterator[Line]:
        nonlocal number, overlong
        for piece in part.split(b"\r") if b"\r" in part else (part,):
            if overlong:  # the end of the over-long line, already numbered
                overlong = False
                continue
            number += 1
            yield number, piece if len(piece) <= limit else None

    while True:
        data = stream.read(block)
        parts = (pending + data).split(b"\n")
        pending = parts.pop() if data else b""
        for part in parts:
            yield from pieces(part[:-1] if part.endswith(b"\r") else part)
        if len(pending) > limit and b"\r" in pending:  # old Mac line ends: the lines so far
            done, _, pending = pending.rpartition(b"\r")
            yield from pieces(done)
        if len(pending) > limit:
            if not overlong:
                number += 1
                yield number, None
                overlong = True
            pending = b""
        if not data:
            return
