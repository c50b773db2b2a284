"""Which rows a claim takes: the ids, in the order they go out. Part of the outbox package.

``claimable`` (rows.py) says what may be claimed as one OR; with ten million rows that OR
defeats the partial indexes (PostgreSQL then walks the primary key through every row ever
sent, or sorts every due row). So the rows are picked in up to three steps, each one index
range in id order and each locking with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL:

1. rows whose lease expired (a worker died): ``ix_delivery_leased``;
2. due confirmations, when the claim takes them (a person is waiting): ``ix_delivery_confirm_due``;
3. due issue copies: ``ix_delivery_open`` (queued, deferred and sending rows, in id order).

The status tests are written as literal SQL, the same text as the indexes' predicates, so the
planner can match them in every plan, generic ones included. On SQLite the expired leases are
ordered by ``+delivery.id`` (SQLite's way of saying "not by an index"): ordered by the primary
key, its planner walks the whole table in id order rather than sort the few rows
``ix_delivery_leased`` finds, a claim of every sending issue then costing a scan of every row
ever sent (35 ms at 330,000 rows, 0.1 ms with the partial index).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Integer, Select, literal_column, select, text
from sqlalchemy.orm import Session

from weekly_mailer.store.models import Delivery, DeliveryKind
from weekly_mailer.store.outbox.rows import issue_filter

DUE = text("delivery.status IN ('queued', 'deferred')")
LEASED = text("delivery.status = 'sending'")
NOT_ISSUE = text("delivery.kind <> 'issue'")  # confirmations and the reader's mail (0008)
BY_ID_UNINDEXED = literal_column("+delivery.id", Integer)  # SQLite: see the module docstring


def pick(
    session: Session,
    *,
    now: dt.datetime,
    limit: int,
    issue_id: int | None = None,
    kind: str | None = None,
) -> list[int]:
    """Up to ``limit`` claimable row ids (see ``claimable``): expired leases first, then due
    confirmations (when the claim covers them), then due issue copies, each in id order."""
    locking = session.get_bind().dialect.name == "postgresql"
    steps: list[Select[Any]] = [
        select(Delivery.id)
        .where(LEASED, Delivery.lease_expires_at < now, issue_filter(issue_id, kind))
        .order_by(Delivery.id if locking else BY_ID_UNINDEXED)
    ]
    confirmation = DeliveryKind.CONFIRMATION.value
    if issue_id is None and kind in (None, confirmation):
        steps.append(
            select(Delivery.id)
            .where(DUE, NOT_ISSUE, Delivery.next_attempt_at <= now)
            .order_by(Delivery.id)
        )
    if kind != confirmation:
        copies = issue_filter(issue_id, DeliveryKind.ISSUE.value if issue_id is None else None)
        steps.append(
            select(Delivery.id)
            .where(DUE, Delivery.next_attempt_at <= now, copies)
            .order_by(Delivery.id)
        )
    ids: list[int] = []
    for step in steps:
        wanted = step.limit(limit - len(ids))
        if locking:
            wanted = wanted.with_for_update(skip_locked=True)
        ids.extend(int(i) for i in session.scalars(wanted))
        if len(ids) >= limit:
            break
    return ids
