"""Moving the delivery rows of old, finished issues out of the outbox (``issues archive``).

The outbox is the ledger of who got what; at a million readers a week it grows by a million rows
a week, and the rows of an issue sent months ago are only ever counted. Archiving one issue, in
the caller's transaction: its per-state counts are added to ``issue.archived_counts`` (so
``issues list`` and ``issues show`` still show them), its rows are written as JSON lines to a
text stream the caller opened (one object a row, with the reader's address), then deleted.
Functions take a session and never commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from sqlalchemy import delete, exists, select

from weekly_mailer.store import outbox
from weekly_mailer.store.models import Delivery, Issue, IssueStatus, Subscriber

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

ROW_FIELDS = (
    "id", "kind", "issue_id", "subscriber_id", "status", "attempts", "created_at",
    "next_attempt_at", "first_failure_at", "sent_at", "last_code", "last_error",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Archived:
    """One issue archived (or, in a dry run, that would be): its rows, by state."""

    issue_id: int
    send_week: dt.date
    counts: dict[str, int]

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


def archivable(session: Session, *, before: dt.date) -> list[Issue]:
    """Finished (``sent``) issues of weeks before ``before`` that still have delivery rows,
    oldest first. An issue still sending is never archived."""
    has_rows = exists().where(Delivery.issue_id == Issue.id)
    return list(
        session.scalars(
            select(Issue)
            .where(Issue.status == IssueStatus.SENT.value, Issue.send_week < before, has_rows)
            .order_by(Issue.send_week)
        )
    )


def _live_counts(session: Session, issue: Issue) -> dict[str, int]:
    with_archived = outbox.counts(session, issue.id)
    before = issue.archived_counts or {}
    return {k: n - int(before.get(k, 0)) for k, n in with_archived.items()}


def _rows(session: Session, issue_id: int) -> Iterator[dict[str, object]]:
    columns = [getattr(Delivery, f) for f in ROW_FIELDS]
    stmt = (
        select(*columns, Subscriber.email)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.issue_id == issue_id)
        .order_by(Delivery.id)
        .execution_options(yield_per=5000)
    )
    for row in session.execute(stmt):
        yield {
            k: v.isoformat() if isinstance(v, dt.datetime) else v
            for k, v in row._mapping.items()
        }


def archive_issue(
    session: Session, issue: Issue, out: TextIO | None, *, now: dt.datetime, dry_run: bool = False
) -> Archived:
    """Archive one issue's delivery rows: count, write to ``out`` (JSON lines), delete.

    ``dry_run`` only counts. The caller commits after ``out`` is safely written: a crash in
    between leaves the rows in the table, and running again writes them again.
    """
    counts = _live_counts(session, issue)
    found = Archived(issue.id, issue.send_week, counts)
    if dry_run:
        return found
    if out is not None:
        for record in _rows(session, issue.id):
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    session.execute(
        delete(Delivery)
        .where(Delivery.issue_id == issue.id)
        .execution_options(synchronize_session=False)
    )
    total = dict(issue.archived_counts or {})
    for state, n in counts.items():
        total[state] = int(total.get(state, 0)) + n
    issue.archived_counts = total
    issue.archived_at = now
    session.flush()
    return found
