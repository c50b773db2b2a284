"""Applying parsed subscriber rows: add new subscribers in bulk, update or suppress known ones.

Known subscribers follow the import rules: a suppression in the file always wins, and someone
who left is never re-activated unless the operator says so (``resubscribe``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from weekly_mailer.clock import utcnow
from weekly_mailer.store.models import EventKind, Subscriber, SubscriberEvent, SubscriberStatus
from weekly_mailer.subscribers.parse import ParsedRow, RowError, parse_rows
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


def _wanted_status(file_status: str | None, *, confirmed: bool) -> str:
    """The status a row asks for. A file's ``status`` is obeyed for suppressions only: an
    ``active`` row is active only with ``--confirmed`` (consent is the operator's call), and a
    ``pending`` row never became active by confirming, so it stays pending."""
    if file_status in _SUPPRESSIONS:
        return file_status
    if file_status == SubscriberStatus.PENDING.value or not confirmed:
        return SubscriberStatus.PENDING.value
    return SubscriberStatus.ACTIVE.value


def import_rows(
    session: Session,
    rows: Iterable[ParsedRow],
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
    unique: dict[str, ParsedRow] = {}
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
