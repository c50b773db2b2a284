"""Subscriber files: import CSV (email, optional name) or JSON exports; export CSV or JSON.

Each bad row becomes a :class:`RowError` with its line number; good rows are kept. New
subscribers are inserted in bulk; known ones follow the import rules (never re-activated after
leaving unless the operator says so).
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterable
from typing import Any, TextIO

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from weekly_mailer.clock import utcnow
from weekly_mailer.errors import SubscriberError
from weekly_mailer.store.models import EventKind, Subscriber, SubscriberEvent, SubscriberStatus
from weekly_mailer.subscribers.rules import (
    _STATUSES,
    _activate,
    _chunks,
    clean_name,
    iter_subscribers,
    normalise_address,
    record,
)

EXPORT_FIELDS = ("email", "name", "status", "created_at", "confirmed_at", "consent_source")


# --- import -------------------------------------------------------------------------------


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
class ImportReport:
    added: int = 0
    activated: int = 0
    resubscribed: int = 0
    unchanged: int = 0
    kept_unsubscribed: int = 0
    suppressed: int = 0
    duplicates: int = 0
    errors: list[RowError] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Row:
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


def parse_rows(data: bytes, *, filename: str = "") -> tuple[list[_Row], list[RowError]]:
    """Parse a CSV or JSON subscriber file into valid rows and per-line errors."""
    errors: list[RowError] = []
    text = _decode_lines(data, errors)
    if filename.lower().endswith(".json") or text.lstrip().startswith("["):
        return _parse_json(text, errors, filename=filename)
    return _parse_csv(text, errors)


def _make_row(line: int, email: Any, name: Any, status: Any, errors: list[RowError]) -> _Row | None:
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
    return _Row(line, address, key, clean, state)


_SUPPRESSIONS = (
    SubscriberStatus.UNSUBSCRIBED.value,
    SubscriberStatus.BOUNCED.value,
    SubscriberStatus.COMPLAINED.value,
)


def _wanted_status(file_status: str | None, *, confirmed: bool) -> str:
    """The status a row asks for. A file's ``status`` is obeyed for suppressions only: an
    ``active`` row is active only with ``--confirmed`` (consent is the operator's call), and a
    ``pending`` row never became active by confirming, so it stays pending."""
    if file_status in _SUPPRESSIONS:
        return file_status
    if file_status == SubscriberStatus.PENDING.value or not confirmed:
        return SubscriberStatus.PENDING.value
    return SubscriberStatus.ACTIVE.value


# Spreadsheets run a cell that starts with one of these as a formula ("CSV injection"): names
# come from a public form, so exported cells get a leading apostrophe, which import removes.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_safe(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_unescape(value: str | None) -> str | None:
    if value is not None and value.startswith("'") and value[1:].startswith(_FORMULA_START):
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


def _parse_csv(text: str, errors: list[RowError]) -> tuple[list[_Row], list[RowError]]:
    """One record per physical line: an address or a name never spans lines, so an unclosed
    quote costs its own line only, and every error carries the line it is on."""
    rows: list[_Row] = []
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
) -> tuple[list[_Row], list[RowError]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{filename}:{exc.lineno}" if filename else f"line {exc.lineno}"
        raise SubscriberError(f"{where}: not valid JSON: {exc.msg}") from exc
    if not isinstance(data, list):
        raise SubscriberError("a JSON import must be a list of objects with at least 'email'")
    rows: list[_Row] = []
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


def import_rows(
    session: Session,
    rows: Iterable[_Row],
    errors: list[RowError],
    *,
    confirmed: bool = False,
    resubscribe: bool = False,
    source: str = "import",
    now: dt.datetime | None = None,
) -> ImportReport:
    """Insert new subscribers in bulk; apply the import rules to known ones."""
    now = now or utcnow()
    report = ImportReport(errors=errors)
    unique: dict[str, _Row] = {}
    for row in rows:
        if row.key in unique:
            report.duplicates += 1
        else:
            unique[row.key] = row
    keys = list(unique)
    existing: dict[str, Subscriber] = {}
    for chunk in _chunks(keys):
        for sub in session.scalars(select(Subscriber).where(Subscriber.email_key.in_(chunk))):
            existing[sub.email_key] = sub

    new_rows: list[dict[str, Any]] = []
    new_kinds: list[list[str]] = []
    for key, row in unique.items():
        known = existing.get(key)
        wanted = _wanted_status(row.status, confirmed=confirmed)
        if known is None:
            active = wanted == SubscriberStatus.ACTIVE.value
            new_rows.append(
                {
                    "email": row.email,
                    "email_key": key,
                    "name": row.name,
                    "status": wanted,
                    "created_at": now,
                    "updated_at": now,
                    "source": source,
                    "confirmed_at": now if active else None,
                    "consent_at": now,
                    "consent_source": source,
                    "unsubscribed_at": now
                    if wanted == SubscriberStatus.UNSUBSCRIBED.value
                    else None,
                    "bounce_count": 0,
                }
            )
            kinds = [EventKind.SUBSCRIBED.value]
            if active:
                kinds.append(EventKind.CONFIRMED.value)
            elif wanted != SubscriberStatus.PENDING.value:
                kinds.append(wanted)
            new_kinds.append(kinds)
            report.added += 1
            continue
        sub = known
        if sub.status in (
            SubscriberStatus.UNSUBSCRIBED,
            SubscriberStatus.BOUNCED,
            SubscriberStatus.COMPLAINED,
        ):
            if resubscribe and wanted in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
                sub.status = wanted
                if wanted == SubscriberStatus.ACTIVE:
                    _activate(sub, source=source, now=now)
                sub.unsubscribed_at = None
                record(session, sub, EventKind.RESUBSCRIBED, source=source, now=now)
                report.resubscribed += 1
            else:
                report.kept_unsubscribed += 1
        elif sub.status == SubscriberStatus.PENDING and wanted == SubscriberStatus.ACTIVE:
            _activate(sub, source=source, now=now)
            record(session, sub, EventKind.CONFIRMED, source=source, now=now)
            report.activated += 1
        elif wanted in (
            SubscriberStatus.UNSUBSCRIBED,
            SubscriberStatus.BOUNCED,
            SubscriberStatus.COMPLAINED,
        ):
            # A suppression from the file always wins: never mail someone who left elsewhere.
            sub.status = wanted
            sub.unsubscribed_at = now
            record(session, sub, EventKind(wanted), source=source, now=now)
            report.suppressed += 1
        else:
            report.unchanged += 1

    for chunk_rows, chunk_kinds in zip(_chunks(new_rows), _chunks(new_kinds), strict=True):
        ids = session.scalars(
            insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True),
            list(chunk_rows),
        ).all()
        events = [
            {"subscriber_id": sid, "kind": kind, "at": now, "source": source, "detail": ""}
            for sid, kinds in zip(ids, chunk_kinds, strict=True)
            for kind in kinds
        ]
        session.execute(insert(SubscriberEvent), events)
    session.flush()
    return report


def import_file(
    session: Session,
    data: bytes,
    *,
    filename: str = "",
    confirmed: bool = False,
    resubscribe: bool = False,
    now: dt.datetime | None = None,
) -> ImportReport:
    """Import a CSV (email, optional name) or JSON export; bad rows are reported, good rows kept."""
    rows, errors = parse_rows(data, filename=filename)
    source = f"import:{filename}" if filename else "import"
    return import_rows(
        session,
        rows,
        errors,
        confirmed=confirmed,
        resubscribe=resubscribe,
        source=source[:200],
        now=now,
    )


def export_row(sub: Subscriber) -> dict[str, str]:
    return {
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "created_at": sub.created_at.isoformat(),
        "confirmed_at": sub.confirmed_at.isoformat() if sub.confirmed_at else "",
        "consent_source": sub.consent_source,
    }


def write_export(session: Session, out: TextIO, *, fmt: str, status: str | None) -> int:
    """Write subscribers as CSV or JSON to ``out``; returns how many."""
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        for sub in iter_subscribers(session, status=status):
            writer.writerow({k: _csv_safe(v) for k, v in export_row(sub).items()})
            n += 1
    elif fmt == "json":
        out.write("[")
        for sub in iter_subscribers(session, status=status):
            out.write(
                ("\n  " if n == 0 else ",\n  ") + json.dumps(export_row(sub), ensure_ascii=False)
            )
            n += 1
        out.write("\n]\n" if n else "]\n")
    else:
        raise SubscriberError(f"unknown export format {fmt!r} (csv or json)")
    return n
