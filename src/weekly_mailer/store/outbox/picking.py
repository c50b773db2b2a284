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

from weekly_mailer.store.models import DUE_STATES, Delivery, DeliveryKind, status_in
from weekly_mailer.store.outbox.rows import issue_filter

DUE = text(status_in(DUE_STATES, column="delivery.status"))
LEASED = text("delivery.status = 'sending'")
NOT_ISSUE = text("delivery.kind <> 'issue'")  # confirmations and the reader's mail (0008)
IS_ISSUE = text("delivery.kind = 'issue'")
BY_ID_UNINDEXED = literal_column("+delivery.id", Integer)  # SQLite: see the module docstring


def pick(
    session: Session,
    *,
    now: dt.datetime,
    limit: int,
    issue_id: int | None = None,
    kind: str | None = None,
    copies: int | None = None,
) -> list[int]:
    """Up to ``limit`` claimable row ids (see ``claimable``): expired leases first, then due
    confirmations (when the claim covers them), then due issue copies, each in id order; of
    them at most ``copies`` issue copies (the warm-up's budget, ``pacing.py``; ``None``: no
    limit of their own)."""
    locking = session.get_bind().dialect.name == "postgresql"
    leased = [LEASED, Delivery.lease_expires_at < now, issue_filter(issue_id, kind)]
    order = Delivery.id if locking else BY_ID_UNINDEXED
    steps: list[tuple[Select[Any], bool]] = []
    if copies is None:
        steps.append((select(Delivery.id).where(*leased).order_by(order), False))
    else:  # the expired leases of issue copies count toward the copies' budget
        steps.append((select(Delivery.id).where(*leased, NOT_ISSUE).order_by(order), False))
        steps.append((select(Delivery.id).where(*leased, IS_ISSUE).order_by(order), True))
    confirmation = DeliveryKind.CONFIRMATION.value
    if issue_id is None and kind in (None, confirmation):
        steps.append(
            (
                select(Delivery.id)
                .where(DUE, NOT_ISSUE, Delivery.next_attempt_at <= now)
                .order_by(Delivery.id),
                False,
            )
        )
    if kind != confirmation:
        filtered = issue_filter(issue_id, DeliveryKind.ISSUE.value if issue_id is None else None)
        steps.append(
            (
                select(Delivery.id)
                .where(DUE, Delivery.next_attempt_at <= now, filtered)
                .order_by(Delivery.id),
                copies is not None,
            )
        )
    ids: list[int] = []
    for step, counted in steps:
        room = limit - len(ids)
        if counted:
            assert copies is not None
            room = min(room, copies)
        if room <= 0:
            continue
        wanted = step.limit(room)
        if locking:
            wanted = wanted.with_for_update(skip_locked=True)
        found = [int(i) for i in session.scalars(wanted)]
        ids.extend(found)
        if counted:
            copies = (copies or 0) - len(found)
        if len(ids) >= limit:
            break
    return ids
