"""The outbox's queue: enqueue, claim, record, extend a lease, release. See the package."""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from weekly_mailer import metrics
from weekly_mailer.store.committed import after_commit
from weekly_mailer.store.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Subscriber,
)
from weekly_mailer.store.outbox.picking import pick
from weekly_mailer.store.outbox.rows import (
    OPEN_STATES,
    SENDABLE,
    ClaimedRow,
    Outcome,
    T,
    released_status,
)
from weekly_mailer.store.signups import signup_bindings


def enqueue_confirmation(session: Session, subscriber_id: int, *, now: dt.datetime) -> int:
    """Queue one confirmation e-mail for the subscriber, due now; returns the row's id.

    The caller commits it together with whatever asked for it (a sign-up, a resubscribe), so
    a committed request always has its e-mail in the outbox.
    """
    return enqueue_mail(session, subscriber_id, DeliveryKind.CONFIRMATION, now=now)


def enqueue_mail(
    session: Session, subscriber_id: int, kind: DeliveryKind, *, now: dt.datetime
) -> int:
    """Queue one e-mail of ``kind`` that is not an issue copy (a confirmation, the reader's own
    mail) for the subscriber, due now; returns the row's id. The caller commits it."""
    row = Delivery(
        kind=kind.value,
        issue_id=None,
        subscriber_id=subscriber_id,
        status=DeliveryStatus.QUEUED.value,
        attempts=0,
        created_at=now,
        next_attempt_at=now,
        last_error="",
    )
    session.add(row)
    session.flush()
    return int(row.id)


def open_confirmation(session: Session, subscriber_id: int) -> int | None:
    """The id of the subscriber's confirmation row not yet sent or given up, if any."""
    found = session.scalar(
        select(func.min(Delivery.id)).where(
            Delivery.kind == DeliveryKind.CONFIRMATION.value,
            Delivery.subscriber_id == subscriber_id,
            Delivery.status.in_([s.value for s in OPEN_STATES]),
        )
    )
    return None if found is None else int(found)


def claim(
    session: Session,
    *,
    owner: str,
    now: dt.datetime,
    lease_seconds: float,
    limit: int,
    issue_id: int | None = None,
    kind: str | None = None,
    copies: int | None = None,
) -> tuple[list[ClaimedRow], int]:
    """Lease up to ``limit`` due rows to ``owner``; returns them and how many were skipped.

    The rows: one issue's (``issue_id``), or those of every sending issue and every due
    confirmation, or of one ``kind`` only (see ``issue_filter``). Rows whose subscriber may no
    longer get them (an issue copy: not active; a confirmation: confirmed already, or
    complained) are marked ``skipped`` here, at send time. ``copies``: at most that many issue
    copies (the warm-up's budget, ``pacing.py``).
    """
    ids = pick(session, now=now, limit=limit, issue_id=issue_id, kind=kind, copies=copies)
    if not ids:
        return [], 0
    found = session.execute(_claim_statements()[0], {"ids": ids}).all()
    rows: list[ClaimedRow] = []
    inactive: list[int] = []
    unneeded: list[int] = []
    confirmation = DeliveryKind.CONFIRMATION.value
    token = secrets.token_hex(8)
    bindings = signup_bindings(session, (f[3] for f in found if f[1] == confirmation))
    for id_, kind_, issue, subscriber, attempts, first, email, key, name, status, was in found:
        if status not in SENDABLE.get(kind_, ()):
            (unneeded if kind_ == confirmation else inactive).append(id_)
            continue
        rows.append(
            ClaimedRow(
                id_, issue, subscriber, email, key, name or "", attempts, first, kind_, token,
                bindings.get(subscriber, ""), was or "",
            )  # fmt: skip
        )
    for ids_, why in (
        (inactive, "subscriber is no longer active"),
        (unneeded, "subscriber needs no confirmation (confirmed, or complained)"),
    ):
        if ids_:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids_))
                .values(
                    status=DeliveryStatus.SKIPPED.value,
                    last_error=why,
                    lease_owner=None,
                    lease_expires_at=None,
                    lease_token=None,
                )
            )
    if inactive or unneeded:
        after_commit(session, lambda: _count_skipped(len(inactive), len(unneeded)))
    if rows:
        session.execute(
            _claim_statements()[1],
            {
                "ids": [r.delivery_id for r in rows],
                "b_owner": owner,
                "b_expires": now + dt.timedelta(seconds=lease_seconds),
                "b_token": token,
            },
        )
    return rows, len(inactive) + len(unneeded)


@functools.lru_cache(maxsize=1)
def _claim_statements() -> tuple[Any, Any]:
    """``claim``'s SELECT of the picked rows with their subscribers and its UPDATE of the
    lease, built once with the ids as one expanding parameter: Core statements of the tables
    (no ORM entities to load), so a claim's cost is the database's, not the building and
    coercing of two IN lists of a few hundred literals at every claim."""
    ids: Any = bindparam("ids", expanding=True)
    S = cast(Table, Subscriber.__table__)
    found = (
        select(
            T.c.id, T.c.kind, T.c.issue_id, T.c.subscriber_id, T.c.attempts,
            T.c.first_failure_at, S.c.email, S.c.email_key, S.c.name, S.c.status,
            T.c.lease_token,
        )  # fmt: skip
        .join(S, S.c.id == T.c.subscriber_id)
        .where(T.c.id.in_(ids))
        .order_by(T.c.id)
    )
    lease = (
        update(T)
        .where(T.c.id.in_(ids))
        .values(
            status=DeliveryStatus.SENDING.value,
            lease_owner=bindparam("b_owner"),
            lease_expires_at=bindparam("b_expires"),
            lease_token=bindparam("b_token"),
        )
    )
    return found, lease


def _count_skipped(issue_copies: int, confirmations: int) -> None:
    metrics.count_messages(DeliveryKind.ISSUE.value, DeliveryStatus.SKIPPED.value, issue_copies)
    metrics.count_messages(
        DeliveryKind.CONFIRMATION.value, DeliveryStatus.SKIPPED.value, confirmations
    )


def record(
    session: Session,
    outcomes: Sequence[Outcome],
    *,
    owner: str,
    now: dt.datetime,
) -> list[Outcome]:
    """Write a batch of results: the sent rows one statement per answer time (a chunk's), the
    others one executemany per kind of outcome. Returns the outcomes written.

    What a result means for the subscriber (a hard bounce, a delivery that clears old bounces)
    is the subscriber rules' business: the worker calls them in the same transaction, for the
    outcomes returned only.

    The fence: a result is written only while its row is still ``sending`` under the claim
    that made it (the row's ``lease_token`` is the ``ClaimedRow``'s; on PostgreSQL the rows are
    locked first, on SQLite the transaction holds the write lock). A result recorded under a
    lost lease (another worker claimed the row meanwhile) changes nothing.
    """
    outcomes = still_held(session, outcomes)
    by_status: dict[str, list[dict[str, Any]]] = {}
    sent: dict[tuple[int | None, dt.datetime], list[int]] = {}
    for o in outcomes:
        if o.status == DeliveryStatus.SENT.value:  # by answer time: a chunk's share one
            sent.setdefault((o.code, o.at or now), []).append(o.row.delivery_id)
            continue
        key = o.status if o.counted else HELD_BACK
        by_status.setdefault(key, []).append(
            {
                "b_id": o.row.delivery_id,
                "b_code": o.code,
                "b_error": o.error[:2000],
                "b_next": o.next_attempt_at,
                "b_at": o.at or now,
            }
        )
    statements = _record_statements()
    for (code, at), ids in sent.items():
        for i in range(0, len(ids), _IDS_PER_STATEMENT):
            session.execute(
                statements[DeliveryStatus.SENT.value],
                {"ids": ids[i : i + _IDS_PER_STATEMENT], "b_code": code, "b_at": at},
            )
    for status, statement in statements.items():
        if status != DeliveryStatus.SENT.value and (params := by_status.get(status)):
            for p in params:
                p["b_owner"] = owner
            session.execute(statement, params)
    return outcomes


def still_held(session: Session, outcomes: Sequence[Outcome]) -> list[Outcome]:
    """The outcomes whose rows are still ``sending`` under their own claim's token."""
    if not outcomes:
        return []
    ids = [o.row.delivery_id for o in outcomes]
    tokens: dict[int, str | None] = {}
    statement = _held_statement(session.get_bind().dialect.name == "postgresql")
    for i in range(0, len(ids), _IDS_PER_STATEMENT):
        for id_, token in session.execute(statement, {"ids": ids[i : i + _IDS_PER_STATEMENT]}):
            tokens[int(id_)] = token
    return [o for o in outcomes if tokens.get(o.row.delivery_id, 0) == (o.row.lease_token or None)]


@functools.lru_cache(maxsize=2)
def _held_statement(lock: bool) -> Any:
    statement = select(T.c.id, T.c.lease_token).where(
        T.c.id.in_(bindparam("ids", expanding=True)),
        T.c.status == DeliveryStatus.SENDING.value,
    )
    return statement.with_for_update() if lock else statement


HELD_BACK = "held back"  # record's key for a deferral not counted (Outcome.counted)
_IDS_PER_STATEMENT = 500  # bound parameters a statement: well under any SQLite's limit


@functools.lru_cache(maxsize=1)
def _record_statements() -> dict[str, Any]:
    """``record``'s UPDATEs, built once (building them cost more than running them): the sent
    rows of one answer time by their ids (one statement for a chunk: one execution a row cost
    more in parameter handling than the database's work), the others one execution a row."""
    mine = and_(T.c.lease_owner == bindparam("b_owner"), T.c.status == DeliveryStatus.SENDING.value)
    cleared = {"lease_owner": None, "lease_expires_at": None, "lease_token": None}
    statements: dict[str, Any] = {
        DeliveryStatus.SENT.value: update(T)
        .where(T.c.id.in_(bindparam("ids", expanding=True)))
        .values(
            status=DeliveryStatus.SENT.value,
            sent_at=bindparam("b_at"),
            last_code=bindparam("b_code"),
            last_error="",
            attempts=T.c.attempts + 1,
            **cleared,
        )
    }
    for status in (DeliveryStatus.DEFERRED.value, DeliveryStatus.FAILED.value):
        statements[status] = (
            update(T)
            .where(T.c.id == bindparam("b_id"), mine)
            .values(
                status=status,
                last_code=bindparam("b_code"),
                last_error=bindparam("b_error"),
                next_attempt_at=bindparam("b_next"),
                first_failure_at=func.coalesce(T.c.first_failure_at, bindparam("b_at")),
                attempts=T.c.attempts + 1,
                **cleared,
            )
        )
    # Deferred by a reply about our pace: nothing counted toward giving up (see Outcome).
    statements[HELD_BACK] = (
        update(T)
        .where(T.c.id == bindparam("b_id"), mine)
        .values(
            status=DeliveryStatus.DEFERRED.value,
            last_code=bindparam("b_code"),
            last_error=bindparam("b_error"),
            next_attempt_at=bindparam("b_next"),
            **cleared,
        )
    )
    # Handed back untried: a row that failed before goes back to deferred.
    statements[DeliveryStatus.QUEUED.value] = (
        update(T)
        .where(T.c.id == bindparam("b_id"), mine)
        .values(status=released_status(), **cleared)
    )
    return statements


def extend_lease(session: Session, *, owner: str, now: dt.datetime, lease_seconds: float) -> int:
    """Push back the expiry of every row ``owner`` still holds; returns how many.

    On PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED`` first: a row another
    transaction is writing at this moment (the worker recording its result) is left to that
    transaction, so a heartbeat never waits on, or deadlocks with, its own worker's writes.
    """
    mine = and_(T.c.lease_owner == owner, T.c.status == DeliveryStatus.SENDING.value)
    if session.get_bind().dialect.name == "postgresql":
        locked = select(T.c.id).where(mine).with_for_update(skip_locked=True)
        mine = T.c.id.in_(locked.scalar_subquery())
    result = session.execute(
        update(T).where(mine).values(lease_expires_at=now + dt.timedelta(seconds=lease_seconds))
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)


def renew(
    session: Session, *, owner: str, now: dt.datetime, lease_seconds: float
) -> list[tuple[int, str]]:
    """:func:`extend_lease`, returning the ``(id, lease_token)`` of every row renewed: what
    ``owner`` still holds (a row another worker took carries that worker's owner and token;
    on PostgreSQL a row locked by another transaction at this moment is not renewed, nor
    returned)."""
    mine = and_(T.c.lease_owner == owner, T.c.status == DeliveryStatus.SENDING.value)
    if session.get_bind().dialect.name == "postgresql":
        locked = select(T.c.id).where(mine).with_for_update(skip_locked=True)
        mine = T.c.id.in_(locked.scalar_subquery())
    result = session.execute(
        update(T)
        .where(mine)
        .values(lease_expires_at=now + dt.timedelta(seconds=lease_seconds))
        .returning(T.c.id, T.c.lease_token)
    )
    return [(int(i), str(t or "")) for i, t in result]


def release(
    session: Session,
    *,
    owner: str,
    rows: Sequence[ClaimedRow] | None = None,
    tokens: Sequence[str] | None = None,
) -> int:
    """Hand every row ``owner`` holds back to the queue (queued, or deferred if tried before);
    with ``rows``, only those of them still held under their own claim's token; with
    ``tokens``, only those held under one of these claims (a dead worker's journal's)."""
    where = and_(T.c.lease_owner == owner, T.c.status == DeliveryStatus.SENDING.value)
    if tokens is not None:
        if not tokens:
            return 0
        where = and_(where, T.c.lease_token.in_(sorted(set(tokens))))
    if rows is not None:
        held = {o.row.delivery_id for o in still_held(session, [Outcome(r, "") for r in rows])}
        if not held:
            return 0
        where = and_(where, T.c.id.in_(sorted(held)))
    result = session.execute(
        update(T)
        .where(where)
        .values(
            status=released_status(), lease_owner=None, lease_expires_at=None, lease_token=None
        )
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)


def mark_accepted(session: Session, entries: Sequence[tuple[int, str, int, dt.datetime]]) -> int:
    """Rows a delivery process's journal says the server accepted, ``(id, lease_token, code,
    when)`` each, recorded ``sent`` where the row is still ``sending`` under that claim (a row
    claimed again since, or recorded already, is left alone); returns how many."""
    if not entries:
        return 0
    statement = (
        update(T)
        .where(
            T.c.id == bindparam("b_id"),
            T.c.lease_token == bindparam("b_token"),
            T.c.status == DeliveryStatus.SENDING.value,
        )
        .values(
            status=DeliveryStatus.SENT.value,
            sent_at=bindparam("b_at"),
            last_code=bindparam("b_code"),
            last_error="",
            attempts=T.c.attempts + 1,
            lease_owner=None,
            lease_expires_at=None,
            lease_token=None,
        )
    )
    result = session.execute(
        statement,
        [{"b_id": i, "b_token": t, "b_code": c, "b_at": at} for i, t, c, at in entries],
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)
