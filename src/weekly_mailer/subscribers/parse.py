"""Reading subscriber files: CSV (email, optional name, or a header naming the columns) or a
JSON list, into valid rows and per-line errors, a chunk at a time.

Each bad row becomes a :class:`RowError` with its line number (or JSON item); good rows are kept.
A UTF-8 CSV file is streamed: memory stays flat whatever its size, and a line over 64 KB
(:data:`.lines.MAX_ROW_BYTES`) is refused as an error of its own without being read whole.
Address validation (the costly part) runs in a pool of worker processes over chunks of lines
once a file is larger than one chunk; the chunks come back in file order. A UTF-16 (Excel) or
JSON file is read whole. Nothing here touches the database: :mod:`.importer` applies the rows.
"""

from __future__ import annotations

import codecs
import collections
import concurrent.futures
import csv
import dataclasses
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import threading
from collections.abc import Generator, Iterable, Iterator
from typing import IO, Any, NamedTuple

from weekly_mailer.errors import SubscriberError
from weekly_mailer.subscribers.lines import MAX_ROW_BYTES, Line, byte_lines
from weekly_mailer.subscribers.rules import _STATUSES, clean_name, normalise_address

CHUNK_ROWS = 5000  # lines per chunk: what a worker validates and the importer writes at once
_BLOCK = 1 << 20  # bytes read from the file at a time


@dataclasses.dataclass
class RowError:
    line: int  # the line of a CSV file, or the 1-based position of an item in a JSON list
    reason: str
    item: bool = False  # True for JSON list items

    @property
    def where(self) -> str:
        """``12`` for a line, ``item 12`` for a JSON list item (as in ``FILE:WHERE: reason``)."""
        return f"item {self.line}" if self.item else str(self.line)

    def __str__(self) -> str:
        return f"{'item' if self.item else 'line'} {self.line}: {self.reason}"


class ParsedRow(NamedTuple):
    """One valid row of a subscriber file: a normalised address, a clean name, a status."""

    line: int
    email: str
    key: str
    name: str
    status: str | None


@dataclasses.dataclass
class Chunk:
    """Consecutive rows of a file: the valid ones and the errors, each in file order."""

    rows: list[ParsedRow]
    errors: list[RowError]


def _decode_lines(data: bytes, errors: list[RowError]) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text" export: UTF-16 with a byte-order mark (tab-separated).
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise SubscriberError("the file starts like UTF-16 but is not valid UTF-16") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    parts: list[str] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            parts.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError:
            errors.append(RowError(number, "not valid UTF-8 (save the file as UTF-8)"))
            parts.append("")
    return "\n".join(parts)


def parse_rows(data: bytes, *, filename: str = "") -> tuple[list[ParsedRow], list[RowError]]:
    """Parse a CSV or JSON subscriber file into valid rows and per-line errors (in this process)."""
    rows: list[ParsedRow] = []
    errors: list[RowError] = []
    for chunk in read_chunks(io.BytesIO(data), filename=filename, workers=0):
        rows.extend(chunk.rows)
        errors.extend(chunk.errors)
    return rows, errors


def _make_row(
    line: int, email: Any, name: Any, status: Any, errors: list[RowError]
) -> ParsedRow | None:
    if not isinstance(email, str) or not email.strip():
        errors.append(RowError(line, "no e-mail address"))
        return None
    try:
        address, key = normalise_address(email)
        clean = clean_name(name if isinstance(name, str) else "")
    except SubscriberError as exc:
        errors.append(RowError(line, str(exc)))
        return None
    state = status.strip().lower() if isinstance(status, str) and status.strip() else None
    if state is not None and state not in _STATUSES:
        errors.append(RowError(line, f"unknown status {status!r}"))
        return None
    return ParsedRow(line, address, key, clean, state)


# Spreadsheets run a cell that starts with one of these as a formula ("CSV injection"): names
# come from a public form, so exported cells get a leading apostrophe, which import removes.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_unescape(value: str | None) -> str | None:
    if value is not None and value.startswith("'") and value[1:].startswith(FORMULA_START):
        return value[1:]
    return value


def _cell(cells: list[str], columns: dict[str, int], col: str) -> str | None:
    i = columns.get(col)
    return _csv_unescape(cells[i]) if i is not None and i < len(cells) else None


# Header words (lower case, "-" and "_" read as spaces) that name our columns.
_HEADER_ALIASES = {
    "email": ("email", "e mail", "email address", "e mail address", "mail", "emailaddress"),
    "name": ("name", "full name", "display name", "fullname"),
    "first": ("first name", "firstname", "given name", "first"),
    "last": ("last name", "lastname", "surname", "family name", "last"),
    "status": ("status",),
}
_DELIMITERS = (",", ";", "\t")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BAD_UTF8 = "not valid UTF-8 (save the file as UTF-8)"


def _header_key(cell: str) -> str:
    return " ".join(
        cell.strip().lstrip("\ufeff").strip('"').lower().replace("-", " ").replace("_", " ").split()
    )


def _read_header(cells: list[str]) -> dict[str, int] | None:
    """Column positions when ``cells`` is a header row (it names an e-mail column), else None."""
    found: dict[str, int] = {}
    for index, cell in enumerate(cells):
        key = _header_key(cell)
        for column, aliases in _HEADER_ALIASES.items():
            if key in aliases and column not in found:
                found[column] = index
    return found if "email" in found else None


def _delimiter(first_line: str) -> str:
    """The delimiter of a CSV file: a comma, unless the first line has more ; or tabs."""
    counts = {d: first_line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


_TOO_LONG = f"longer than {MAX_ROW_BYTES // 1024} KB: not a subscriber row (is this a CSV file?)"


def _decode(number: int, raw: bytes | str | None, errors: list[RowError]) -> str | None:
    if raw is None:
        errors.append(RowError(number, _TOO_LONG))
        return None
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError:
        errors.append(RowError(number, _BAD_UTF8))
        return None


def _split(number: int, line: str, delimiter: str, errors: list[RowError]) -> list[str] | None:
    try:
        return next(csv.reader([line], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        reason = "unclosed quote" if "end of data" in str(exc) else f"malformed CSV: {exc}"
        errors.append(RowError(number, reason))
        return None


def check_lines(
    delimiter: str, columns: dict[str, int] | None, lines: list[Line]
) -> tuple[list[ParsedRow], list[RowError]]:
    """Validate CSV data lines (after the header): one record per physical line, so an
    unclosed quote costs its own line only, and every error carries the line it is on.
    Runs in a worker process: arguments and results are plain, picklable data."""
    rows: list[ParsedRow] = []
    errors: list[RowError] = []
    layout = columns or {"email": 0, "name": 1}
    first_last = columns is not None and ("first" in columns or "last" in columns)
    for number, raw in lines:
        line = _decode(number, raw, errors)
        if line is None or not line.strip():
            continue
        cells = _split(number, line, delimiter, errors)
        if cells is None or cells[0].lstrip().startswith("#"):
            continue
        if columns is None and len(cells) > 2:
            errors.append(
                RowError(
                    number,
                    f"expected at most 2 columns (email, name), got {len(cells)}; "
                    "add a header row naming the email column to import wider files",
                )
            )
            continue
        name = _cell(cells, layout, "name")
        if name is None and first_last:
            parts = (_cell(cells, layout, "first"), _cell(cells, layout, "last"))
            name = " ".join(p.strip() for p in parts if p and p.strip())
        row = _make_row(
            number, _cell(cells, layout, "email"), name, _cell(cells, layout, "status"), errors
        )
        if row is not None:
            rows.append(row)
    return rows, errors


def _looks_like_json(head: bytes, filename: str) -> bool:
    text = head[:4096].decode("utf-8", "ignore").lstrip("\ufeff \t\r\n")
    return filename.lower().endswith(".json") or text.startswith("[")


def read_chunks(
    stream: IO[bytes],
    *,
    filename: str = "",
    workers: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Generator[Chunk, None, None]:
    """The rows and errors of a subscriber file, a chunk at a time, in file order.

    ``workers``: processes validating chunks (``None``: one per core; ``0``: this process). A
    file that fits in one chunk is always read here. Close the iterator to stop the workers.
    """
    head = stream.read(_BLOCK)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _looks_like_json(
        head, filename
    ):
        errors: list[RowError] = []
        text = _decode_lines(head + stream.read(), errors)
        if filename.lower().endswith(".json") or text.lstrip().startswith("["):
            rows, errors = _parse_json(text, errors, filename=filename)
            for start in range(0, max(len(rows), 1), chunk_rows):
                yield Chunk(rows[start : start + chunk_rows], errors if start == 0 else [])
            return
        if errors:
            yield Chunk([], errors)
        lines: Iterator[Line] = enumerate(_LINE_BREAK.split(text), start=1)
    else:
        lines = byte_lines(head, stream, block=_BLOCK)
    yield from _csv_chunks(lines, workers=workers, chunk_rows=chunk_rows)


def _csv_chunks(lines: Iterator[Line], *, workers: int | None, chunk_rows: int) -> Iterator[Chunk]:
    # The header decides the layout: read up to the first line that parses as CSV.
    errors: list[RowError] = []
    delimiter: str | None = None
    columns: dict[str, int] | None = None
    first: list[Line] = []
    for number, raw in lines:
        line = _decode(number, raw, errors)
        if line is None or not line.strip():
            continue
        delimiter = delimiter or _delimiter(line)
        cells = _split(number, line, delimiter, errors)
        if cells is None:
            continue
        columns = _read_header(cells)
        if columns is None:
            first.append((number, raw))
        break
    batches = _batches(first, lines, chunk_rows)
    todo = next(batches, [])
    following = next(batches, None)
    sep = delimiter or ","
    if following is None or workers == 0:  # one chunk, or asked to stay in this process
        for batch in _chain(todo, following, batches):
            rows, found = check_lines(sep, columns, batch)
            yield Chunk(rows, errors + found)
            errors = []
        return
    count = workers or len(os.sched_getaffinity(0))
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=count,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_quiet_worker,
    )
    try:
        running: collections.deque[concurrent.futures.Future[Any]] = collections.deque()
        for batch in _chain(todo, following, batches):
            running.append(pool.submit(check_lines, sep, columns, batch))
            if len(running) > 2 * count:  # a bounded queue keeps memory flat
                rows, found = running.popleft().result()
                yield Chunk(rows, errors + found)
                errors = []
        while running:
            rows, found = running.popleft().result()
            yield Chunk(rows, errors + found)
            errors = []
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _quiet_worker() -> None:
    """A worker leaves Ctrl-C to the importing process, which stops the pool (no tracebacks),
    and ends the moment that process ends, however it ends (see :func:`_end_with_importer`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_importer()


def _end_with_importer() -> None:
    """Exit when the importing process is gone, even killed with SIGKILL.

    The forkserver, not the importer, is a worker's parent, so ``PR_SET_PDEATHSIG`` would wait
    for the forkserver, and the forkserver waits for its ``alive`` pipe, whose write end every
    worker holds too: killed importers used to leave all of them running. The one thing only
    the importer holds is the write end of each worker's data pipe, ``parent_process()``'s
    sentinel: it turns readable when the importer ends. A daemon thread waits on it.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(1)  # the importer is gone: nobody wants this chunk any more

    threading.Thread(target=watch, name="end-with-importer", daemon=True).start()


def _chain(
    todo: list[Line], following: list[Line] | None, rest: Iterator[list[Line]]
) -> Iterator[list[Line]]:
    yield todo
    if following is not None:
        yield following
        yield from rest


def _batches(first: list[Line], lines: Iterable[Line], size: int) -> Iterator[list[Line]]:
    batch = first
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _parse_json(
    text: str, errors: list[RowError], *, filename: str = ""
) -> tuple[list[ParsedRow], list[RowError]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{filename}:{exc.lineno}" if filename else f"line {exc.lineno}"
        raise SubscriberError(f"{where}: not valid JSON: {exc.msg}") from exc
    if not isinstance(data, list):
        raise SubscriberError("a JSON import must be a list of objects with at least 'email'")
    rows: list[ParsedRow] = []
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            errors.append(RowError(index, "item is not an object", item=True))
            continue
        item_errors: list[RowError] = []
        row = _make_row(index, item.get("email"), item.get("name"), item.get("status"), item_errors)
        errors.extend(dataclasses.replace(e, item=True) for e in item_errors)
        if row is not None:
            rows.append(row)
    return rows, errors
