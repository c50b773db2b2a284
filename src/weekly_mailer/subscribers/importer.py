"""Applying parsed subscriber rows, a chunk at a time: add new subscribers in bulk, update or
suppress known ones.

Known subscribers follow the import rules: a suppression in the file always wins, and someone
who left is never re-activated unless the operator says so (``resubscribe``). A row whose
address came earlier in the file is a duplicate; the :class:`Importer` remembers which
subscribers the file named as one bit per subscriber id, so memory stays flat in file size.
Each chunk is written with a few set-based statements (on PostgreSQL, ``COPY`` into a temporary
table and one ``INSERT … SELECT … ON CONFLICT``); the caller may commit after each chunk, and a
run stopped half-way can simply be run again (rows already imported are "already known").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import IO, Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from weekly_mailer.clock import utcnow
from weekly_mailer.store.models import EventKind, Subscriber, SubscriberStatus
from weekly_mailer.subscribers.forget import erased_keys
from weekly_mailer.subscribers.parse import ParsedRow, RowError, read_chunks
from weekly_mailer.subscribers.rules import _activate, _chunks, record


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


_SUPPRESSIONS = (
    SubscriberStatus.UNSUBSCRIBED.value,
    SubscriberStatus.BOUNCED.value,
    SubscriberStatus.COMPLAINED.value,
)
_LOOKUP = 1000  # addresses per SELECT … IN
_ACTIVE = SubscriberStatus.ACTIVE.value


def _wanted_status(file_status: str | None, *, confirmed: bool) -> str:
    """The status a row asks for. A file's ``status`` is obeyed for suppressions only: an
    ``active`` row is active only with ``--confirmed`` (consent is the operator's call), and a
    ``pending`` row never became active by confirming, so it stays pending."""
    if file_status in _SUPPRESSIONS:
        return file_status
    if file_status == SubscriberStatus.PENDING.value or not confirmed:
        return SubscriberStatus.PENDING.value
    return SubscriberStatus.ACTIVE.value


def _event_kinds(status: str) -> list[str]:
    """The audit trail of a new subscriber: asked to join, then what the file says."""
    if status == SubscriberStatus.ACTIVE.value:
        return [EventKind.SUBSCRIBED.value, EventKind.CONFIRMED.value]
    if status == SubscriberStatus.PENDING.value:
        return [EventKind.SUBSCRIBED.value]
    return [EventKind.SUBSCRIBED.value, status]


class Importer:
    """Applies chunks of rows of one file, in file order; ``report`` adds them up."""

    def __init__(
        self,
        *,
        confirmed: bool = False,
        resubscribe: bool = False,
        source: str = "import",
        now: dt.datetime | None = None,
        erased_key: str = "",
    ) -> None:
        self.erased_key = erased_key  # secret_key: addresses erased before stay off the list
        self.confirmed = confirmed
        self.resubscribe = resubscribe
        self.source = source[:200]
        self.now = now or utcnow()
        self.report = ImportReport()
        self._named = bytearray()  # bit n: subscriber n was named by an earlier row

    def _seen(self, sub_id: int) -> bool:
        """Whether the file named this subscriber before; marks it named."""
        byte, bit = divmod(sub_id, 8)
        if byte >= len(self._named):
            self._named.extend(bytes(max(byte + 1 - len(self._named), len(self._named))))
        was = self._named[byte] >> bit & 1
        self._named[byte] |= 1 << bit
        return bool(was)

    def apply(self, session: Session, rows: Sequence[ParsedRow]) -> None:
        """Apply one chunk of rows (flushed, not committed)."""
        report = self.report
        unique: dict[str, ParsedRow] = {}
        for row in rows:
            if row.key in unique:
                report.duplicates += 1
            else:
                unique[row.key] = row
        changes: dict[int, str] = {}
        for sub_id, key, status in self._known(session, list(unique)):
            row = unique.pop(key)
            if self._seen(sub_id):
                report.duplicates += 1
                continue
            wanted = _wanted_status(row.status, confirmed=self.confirmed)
            if status in _SUPPRESSIONS:  # who left comes back only with --resubscribe
                if self.resubscribe and wanted not in _SUPPRESSIONS:
                    changes[sub_id] = wanted
                else:
                    report.kept_unsubscribed += 1
            elif wanted in _SUPPRESSIONS or (
                status in (SubscriberStatus.PENDING.value, SubscriberStatus.EDITOR.value)
                and wanted != status  # an editor's row (proofs) becomes a reader like a new one
            ):
                changes[sub_id] = wanted
            else:
                report.unchanged += 1
        if changes:
            self._change(session, changes)
        if unique and self.erased_key and not self.resubscribe:  # forgotten: kept off the list
            for key in erased_keys(session, self.erased_key, list(unique)):
                del unique[key]
                report.kept_unsubscribed += 1
        if unique:
            new = [
                (row, _wanted_status(row.status, confirmed=self.confirmed))
                for row in unique.values()
            ]
            if session.get_bind().dialect.name == "postgresql":
                ids = self._copy_new(session, new)
            else:
                ids = self._insert_new(session, new)
            for sub_id in ids:
                self._seen(sub_id)
            report.added += len(ids)
            report.unchanged += len(new) - len(ids)  # signed up meanwhile (PostgreSQL only)
        session.flush()

    def _known(self, session: Session, keys: list[str]) -> Iterable[tuple[int, str, str]]:
        """(id, key, status) of the subscribers among these addresses."""
        conn = session.connection()
        if conn.dialect.name == "postgresql":  # one array parameter: an index scan, no long IN
            sql = "SELECT id, email_key, status FROM subscriber WHERE email_key = ANY(%s)"
            for sub_id, key, status in conn.exec_driver_sql(sql, (keys,)):
                yield int(sub_id), str(key), str(status)
            return
        for chunk in _chunks(keys, _LOOKUP):
            yield from session.execute(
                select(Subscriber.id, Subscriber.email_key, Subscriber.status).where(
                    Subscriber.email_key.in_(chunk)
                )
            )

    def _change(self, session: Session, changes: dict[int, str]) -> None:
        """Known subscribers whose status the file changes, with their events (few, by ORM)."""
        source, now, report = self.source, self.now, self.report
        for chunk in _chunks(sorted(changes), _LOOKUP):
            for sub in session.scalars(select(Subscriber).where(Subscriber.id.in_(chunk))):
                wanted = changes[sub.id]
                if sub.status in _SUPPRESSIONS:  # --resubscribe
                    sub.status = wanted
                    if wanted == SubscriberStatus.ACTIVE:
                        _activate(sub, source=source, now=now)
                    sub.unsubscribed_at = None
                    record(session, sub, EventKind.RESUBSCRIBED, source=source, now=now)
                    report.resubscribed += 1
                elif wanted == SubscriberStatus.ACTIVE:
                    _activate(sub, source=source, now=now)
                    record(session, sub, EventKind.CONFIRMED, source=source, now=now)
                    report.activated += 1
                elif wanted == SubscriberStatus.PENDING:  # an editor's row, now a reader's
                    sub.status = wanted
                    record(session, sub, EventKind.SUBSCRIBED, source=source, now=now)
                else:
                    # A suppression from the file always wins: never mail someone who left.
                    sub.status = wanted
                    sub.unsubscribed_at = now
                    record(session, sub, EventKind(wanted), source=source, now=now)
                    report.suppressed += 1

    def _new_row(self, row: ParsedRow, status: str) -> dict[str, Any]:
        now, source = self.now, self.source
        return {
            "email": row.email,
            "email_key": row.key,
            "name": row.name,
            "status": status,
            "created_at": now,
            "updated_at": now,
            "source": source,
            "confirmed_at": now if status == SubscriberStatus.ACTIVE.value else None,
            "consent_at": now,
            "consent_source": source,
            "unsubscribed_at": now if status == SubscriberStatus.UNSUBSCRIBED.value else None,
            "bounce_count": 0,
        }

    def _insert_new(self, session: Session, new: list[tuple[ParsedRow, str]]) -> list[int]:
        """SQLite: two executemany on the driver's cursor. The write lock is held since BEGIN, so
        no one else inserts meanwhile and the new ids follow the largest one."""
        conn = session.connection()
        # SQLAlchemy's SQLite DATETIME storage format, of the UTC time (as UTCDateTime stores)
        now = self.now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        source, active, left = self.source, _ACTIVE, SubscriberStatus.UNSUBSCRIBED.value
        top = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM subscriber").scalar_one()
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.executemany(
            "INSERT INTO subscriber (email, email_key, name, status, created_at, updated_at, "
            "source, confirmed_at, consent_at, consent_source, unsubscribed_at, bounce_count) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            [
                (row.email, row.key, row.name, status, now, now, source,
                 now if status == active else None, now, source,
                 now if status == left else None)
                for row, status in new
            ],
        )  # fmt: skip
        ids = list(range(int(top) + 1, int(top) + 1 + len(new)))
        last = conn.exec_driver_sql("SELECT max(id) FROM subscriber").scalar_one()
        if last != (ids[-1] if ids else top):  # not consecutive after all: ask for them
            by_key: dict[str, int] = dict(
                conn.exec_driver_sql("SELECT email_key, id FROM subscriber WHERE id > ?", (top,))
            )
            ids = [int(by_key[row.key]) for row, _ in new]
        cursor.executemany(
            "INSERT INTO subscriber_event (subscriber_id, kind, at, source, detail) "
            "VALUES (?, ?, ?, ?, '')",
            [
                (sid, kind, now, source)
                for sid, (_, status) in zip(ids, new, strict=True)
                for kind in _event_kinds(status)
            ],
        )
        cursor.close()
        return ids

    def _copy_new(self, session: Session, new: list[tuple[ParsedRow, str]]) -> list[int]:
        """PostgreSQL: COPY into a temporary table, then one INSERT … SELECT … ON CONFLICT that
        also writes the events; an address added meanwhile by someone else is left alone."""
        conn = session.connection()
        conn.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS import_row (ord integer, email text, "
            "email_key text, name text, status text) ON COMMIT DELETE ROWS"
        )
        conn.exec_driver_sql("TRUNCATE import_row")
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy("COPY import_row (ord, email, email_key, name, status) FROM STDIN") as cp:
            for n, (row, status) in enumerate(new):
                cp.write_row((n, row.email, row.key, row.name, status))
        kinds = {s: _event_kinds(s) for s in {status for _, status in new}}
        second = " ".join(f"WHEN '{s}' THEN '{k[1]}'" for s, k in kinds.items() if len(k) > 1)
        second = second or "WHEN '' THEN ''"  # no second event: the CASE needs a branch
        stmt = text(
            "WITH ins AS (INSERT INTO subscriber (email, email_key, name, status, created_at, "
            "updated_at, source, confirmed_at, consent_at, consent_source, unsubscribed_at, "
            "bounce_count) SELECT email, email_key, name, status, :now, :now, :source, "
            "CASE WHEN status = 'active' THEN :now END, :now, :source, "
            "CASE WHEN status = 'unsubscribed' THEN :now END, 0 FROM import_row ORDER BY ord "
            "ON CONFLICT (email_key) DO NOTHING RETURNING id, status), "
            "ev AS (INSERT INTO subscriber_event (subscriber_id, kind, at, source, detail) "
            "SELECT id, 'subscribed', :now, :source, '' FROM ins UNION ALL "
            f"SELECT id, CASE status {second} END, :now, :source, '' "
            "FROM ins WHERE status <> 'pending') SELECT id FROM ins"
        )
        return [int(i) for i in conn.scalars(stmt, {"now": self.now, "source": self.source})]


def import_rows(
    session: Session,
    rows: Iterable[ParsedRow],
    errors: list[RowError],
    *,
    confirmed: bool = False,
    resubscribe: bool = False,
    source: str = "import",
    now: dt.datetime | None = None,
    erased_key: str = "",
) -> ImportReport:
    """Insert new subscribers in bulk; apply the import rules to known ones (one chunk)."""
    importer = Importer(
        confirmed=confirmed, resubscribe=resubscribe, source=source, now=now, erased_key=erased_key
    )
    importer.apply(session, list(rows))
    importer.report.errors = errors
    return importer.report


def import_source(filename: str) -> str:
    """The ``source`` stamped on imported subscribers and their events."""
    return (f"import:{filename}" if filename else "import")[:200]


def import_file(
    session: Session,
    data: bytes | IO[bytes],
    *,
    filename: str = "",
    confirmed: bool = False,
    resubscribe: bool = False,
    now: dt.datetime | None = None,
    workers: int | None = 0,
    erased_key: str = "",
) -> ImportReport:
    """Import a CSV (email, optional name) or JSON export in one transaction; bad rows are
    reported, good rows kept. ``subscribers import`` commits chunk by chunk instead."""
    import io

    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    importer = Importer(
        confirmed=confirmed,
        resubscribe=resubscribe,
        source=import_source(filename),
        now=now,
        erased_key=erased_key,
    )
    for chunk in read_chunks(stream, filename=filename, workers=workers):
        importer.apply(session, chunk.rows)
        importer.report.errors.extend(chunk.errors)
    return importer.report
