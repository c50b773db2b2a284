"""Exporting subscribers as CSV or JSON (the ``subscribers export`` command)."""

from __future__ import annotations

import csv
import json
from typing import TextIO

from sqlalchemy.orm import Session

from weekly_mailer.clock import utcnow
from weekly_mailer.errors import SubscriberError
from weekly_mailer.store.models import Subscriber
from weekly_mailer.subscribers.parse import FORMULA_START
from weekly_mailer.subscribers.reader import pause_label
from weekly_mailer.subscribers.rules import iter_subscribers

EXPORT_FIELDS = (
    "email", "name", "status", "created_at", "confirmed_at", "consent_source", "paused",
)  # fmt: skip


def _csv_safe(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def export_row(sub: Subscriber) -> dict[str, str]:
    return {
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "created_at": sub.created_at.isoformat(),
        "confirmed_at": sub.confirmed_at.isoformat() if sub.confirmed_at else "",
        "consent_source": sub.consent_source,
        "paused": pause_label(sub, now=utcnow()).removeprefix("paused "),  # "for 2 issues"
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
