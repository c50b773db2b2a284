"""Reading subscriber files: CSV (email, optional name, or a header naming the columns) or a
JSON list, into valid rows and per-line errors.

Each bad row becomes a :class:`RowError` with its line number (or JSON item); good rows are kept.
Nothing here touches the database: :mod:`.importer` applies the rows.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import json
import re
from typing import Any

from weekly_mailer.errors import SubscriberError
from weekly_mailer.subscribers.rules import _STATUSES, clean_name, normalise_address


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


@dataclasses.dataclass
class ParsedRow:
    """One valid row of a subscriber file: a normalised address, a clean name, a status."""

    line: int
    email: str
    key: str
    name: str
    status: str | None


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
    """Parse a CSV or JSON subscriber file into valid rows and per-line errors."""
    errors: list[RowError] = []
    text = _decode_lines(data, errors)
    if filename.lower().endswith(".json") or text.lstrip().startswith("["):
        return _parse_json(text, errors, filename=filename)
    return _parse_csv(text, errors)


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


def _parse_csv(text: str, errors: list[RowError]) -> tuple[list[ParsedRow], list[RowError]]:
    """One record per physical line: an address or a name never spans lines, so an unclosed
    quote costs its own line only, and every error carries the line it is on."""
    rows: list[ParsedRow] = []
    lines = _LINE_BREAK.split(text)
    first_line = next((ln for ln in lines if ln.strip()), "")
    delimiter = _delimiter(first_line)
    columns: dict[str, int] | None = None
    seen_first = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            cells = next(csv.reader([line], delimiter=delimiter, strict=True))
        except csv.Error as exc:
            reason = "unclosed quote" if "end of data" in str(exc) else f"malformed CSV: {exc}"
            errors.append(RowError(number, reason))
            continue
        if not seen_first:
            seen_first = True
            columns = _read_header(cells)
            if columns is not None:
                continue
        if cells[0].lstrip().startswith("#"):
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
        layout = columns or {"email": 0, "name": 1}
        name = _cell(cells, layout, "name")
        if name is None and ("first" in layout or "last" in layout):
            parts = (_cell(cells, layout, "first"), _cell(cells, layout, "last"))
            name = " ".join(p.strip() for p in parts if p and p.strip())
        row = _make_row(
            number,
            _cell(cells, layout, "email"),
            name,
            _cell(cells, layout, "status"),
            errors,
        )
        if row is not None:
            rows.append(row)
    return rows, errors


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
