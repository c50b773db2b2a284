"""The relay's pace, counted in the database: ``daily_quota`` and the warm-up. Part of the outbox.

Every claim asks :func:`budget` how many rows it may take, under one lock for every process
and worker (PostgreSQL: a transaction-level advisory lock; SQLite: ``BEGIN IMMEDIATE`` already
serialises writers), so two workers can never both take the last slots. Records take no
lock: what a claim has used is counted in one statement (:func:`used_since`), so a record
committing meanwhile is seen once, sent or in flight, never missed:

- ``daily_quota``: at most that many messages of every kind in any rolling 24 hours: the rows
  sent in the last 24 hours (``sent_at``, indexed) plus the rows leased right now (in flight)
  leave what this claim may take. When none is left, the next slot frees when the oldest of
  those 24 hours' rows turns 24 hours old (:attr:`Budget.next_slot`).
- the warm-up (``warmup_start``, ``warmup_factor``): issue copies only. The sending day opened
  by the first claim of an issue copy (a ``pacing_day`` row) allows ``warmup_start`` copies;
  each later sending day (opened by the first claim after the last one's 24 hours, so days
  without a send do not count) ``warmup_factor`` times the one before, until a day's allowance
  covers every active reader: the warm-up is over. The copies left over wait for the next
  sending day, in id order (the order of the enqueue: by subscriber).

Both at once: each limits on its own, so the smaller wins. Rows that wait are left as they are
(queued, never deferred, nothing counted against them), and :func:`spared` keeps the stale-row
rule from failing an issue copy that waits on the pace while its issue makes progress.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, func, or_, select, text

from weekly_mailer.store.models import (
    OPEN_STATES,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
)
from weekly_mailer.store.pacing_models import PacingDay

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.config import Settings
    from weekly_mailer.store.outbox.rows import ClaimedRow

WINDOW = dt.timedelta(hours=24)
LOCK_KEY = 0x57_4D_50_41  # "WMPA": the pacing's advisory lock (PostgreSQL)
SOON = dt.timedelta(seconds=1)  # the slot rows in flight hold: look again this soon
MAX_ALLOWANCE = 2**31 - 1


@dataclasses.dataclass(frozen=True, slots=True)
class Pace:
    """The pace configured: ``daily_quota`` (0: none) and the warm-up (``warmup_start`` 0: off)."""

    daily_quota: int = 0
    warmup_start: int = 0
    warmup_factor: float = 2.0

    @classmethod
    def of(cls, settings: Settings) -> Pace:
        return cls(settings.daily_quota, settings.warmup_start, settings.warmup_factor)

    @property
    def active(self) -> bool:
        return self.daily_quota > 0 or self.warmup_start > 0

    def allowance(self, day: int) -> int:
        """The warm-up's allowance on sending day ``day`` (0: the first)."""
        try:
            value = math.ceil(self.warmup_start * self.warmup_factor**day)
        except OverflowError:
            return MAX_ALLOWANCE
        return min(MAX_ALLOWANCE, value)


@dataclasses.dataclass(frozen=True, slots=True)
class Budget:
    """What one claim may take: ``total`` rows of any kind (``None``: no quota) and ``copies``
    issue copies (``None``: no warm-up limit). ``open_day``: the allowance of the warm-up day
    this claim opens if it takes an issue copy. ``next_slot``: when more becomes free, for a
    budget spent (the quota's: every kind waits; ``day_ends``: the warm-up's, copies only)."""

    total: int | None = None
    copies: int | None = None
    open_day: int | None = None
    next_slot: dt.datetime | None = None
    day_ends: dt.datetime | None = None


def lock(session: Session) -> None:
    """Serialise the pacing's claims across every process (held until the transaction ends)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})


def budget(session: Session, pace: Pace, *, now: dt.datetime) -> Budget:
    """What a claim at ``now`` may take (see the module docstring); call :func:`lock` first."""
    total: int | None = None
    slot: dt.datetime | None = None
    if pace.daily_quota > 0:
        sent, flying = used_since(session, now - WINDOW, now=now, exclusive=True)
        used = sent + flying
        total = max(0, pace.daily_quota - used)
        if total == 0:
            slot = _quota_slot(session, used - pace.daily_quota, sent, now=now)
    copies: int | None = None
    open_day: int | None = None
    ends: dt.datetime | None = None
    if pace.warmup_start > 0:
        day = session.scalars(select(PacingDay).order_by(PacingDay.id.desc()).limit(1)).first()
        if day is None or (not day.covers and day.started_at + WINDOW <= now):
            n = session.scalar(select(func.count()).select_from(PacingDay)) or 0
            copies = open_day = pace.allowance(int(n))
        elif not day.covers:
            copies = max(0, day.allowance - sum(
                used_since(session, day.started_at, now=now, copies_only=True)
            ))  # fmt: skip
            if copies == 0:
                ends = day.started_at + WINDOW
    return Budget(total, copies, open_day, slot, ends)


def opened(
    session: Session, spent: Budget, rows: Sequence[ClaimedRow], *, now: dt.datetime
) -> None:
    """After a claim: the warm-up day it opened, if it took an issue copy."""
    if spent.open_day is None or not any(r.kind == DeliveryKind.ISSUE.value for r in rows):
        return
    readers = session.scalar(
        select(func.count())
        .select_from(Subscriber)
        .where(Subscriber.status == SubscriberStatus.ACTIVE.value)
    )
    covers = spent.open_day >= int(readers or 0)
    session.add(PacingDay(started_at=now, allowance=spent.open_day, covers=covers))
    session.flush()


def used_since(
    session: Session,
    since: dt.datetime,
    *,
    now: dt.datetime,
    copies_only: bool = False,
    exclusive: bool = False,
) -> tuple[int, int]:
    """What the pace has used since ``since``: ``(sent, in flight)``, the rows sent at
    ``since`` or later (after it, ``exclusive``) and the rows leased right now (a lease that
    expired is a dead worker's: claimable, not counted); issue copies only, or all.

    ONE statement, so one snapshot. The pacing lock serialises claims, not records (they would
    queue every result behind every claim), and under PostgreSQL's READ COMMITTED each
    statement sees the rows as they are when it starts: counted in two statements, the rows
    whose record committed in between were sending for the first and sent for the second,
    counted by neither, and the claim took their slots again (664 sent on a warm-up day of
    500). In one snapshot each row is in one state. SQLite's ``BEGIN IMMEDIATE`` queued the
    records behind the claim, which is why it never showed there.
    """
    sent: Any = Delivery.sent_at > since if exclusive else Delivery.sent_at >= since
    flying: Any = and_(
        Delivery.status == DeliveryStatus.SENDING.value, Delivery.lease_expires_at >= now
    )
    where: list[Any] = [or_(sent, flying)]
    if copies_only:
        where.append(Delivery.kind == DeliveryKind.ISSUE.value)
    row = session.execute(
        select(
            func.coalesce(func.sum(case((sent, 1), else_=0)), 0),
            func.coalesce(func.sum(case((flying, 1), else_=0)), 0),
        ).where(*where)
    ).one()
    return int(row[0]), int(row[1])


def _quota_slot(session: Session, excess: int, sent: int, *, now: dt.datetime) -> dt.datetime:
    """When the quota frees one slot: the ``excess``-th oldest row of the last 24 hours turns
    24 hours old (rows in flight hold the rest: they become sent or free soon)."""
    if excess >= sent:
        return now + SOON
    oldest = session.scalar(
        select(Delivery.sent_at)
        .where(Delivery.sent_at > now - WINDOW)
        .order_by(Delivery.sent_at)
        .offset(excess)
        .limit(1)
    )
    return now + SOON if oldest is None else oldest + WINDOW


def waits_until(
    spent: Budget, *, copies_due: dt.datetime | None, others_due: dt.datetime | None
) -> dt.datetime | None:
    """When the next row becomes claimable under the pace, given when the next issue copy and
    the next other row (confirmations, the reader's mail) are due; ``None``: nothing open."""
    if spent.day_ends is not None and copies_due is not None:
        copies_due = max(copies_due, spent.day_ends)
    times = [t for t in (copies_due, others_due) if t is not None]
    if not times:
        return None
    first = min(times)
    return max(first, spent.next_slot) if spent.next_slot is not None else first


def spared(now: dt.datetime, max_age: dt.timedelta) -> Any:
    """The stale-row rule's extra condition under a pace: a row never tried, of an issue that
    had a copy sent within ``max_age``, waits on the pace, not on a stalled send: not stale."""
    progressing = (
        select(Delivery.issue_id)
        .where(Delivery.sent_at >= now - max_age, Delivery.kind == DeliveryKind.ISSUE.value)
        .distinct()
    )
    return or_(
        Delivery.first_failure_at.is_not(None),
        Delivery.issue_id.is_(None),
        and_(Delivery.issue_id.is_not(None), Delivery.issue_id.not_in(progressing)),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Forecast:
    """When an issue's open rows should all have gone, under the pace (``issues show``)."""

    waiting: int  # open rows of the issue
    today: int  # of them, how many the pace still lets go in the current 24 hours
    finish: dt.datetime  # expected: the start of the 24 hours in which the last one goes
    warmup_day: int | None  # the warm-up's sending day in force (0: the first), if warming up


def forecast(session: Session, pace: Pace, issue_id: int, *, now: dt.datetime) -> Forecast | None:
    """The expected finish of ``issue_id`` under ``pace`` (``None``: no pace, or nothing open).

    An estimate: later days each allow the quota and the warm-up's next allowance (the smaller),
    and start 24 hours after the current one (its first send, or the warm-up day's opening);
    other mail sent meanwhile (confirmations, another issue) comes on top.
    """
    if not pace.active:
        return None
    waiting = int(
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.issue_id == issue_id,
                Delivery.status.in_([s.value for s in OPEN_STATES]),
            )
        )
        or 0
    )
    if waiting == 0:
        return None
    spent = budget(session, pace, now=now)
    unlimited = waiting + 1
    today = min(
        unlimited if spent.total is None else spent.total,
        unlimited if spent.copies is None else spent.copies,
    )
    start = now
    day = None
    covered = False
    if pace.warmup_start > 0:
        last = session.scalars(select(PacingDay).order_by(PacingDay.id.desc()).limit(1)).first()
        count = int(session.scalar(select(func.count()).select_from(PacingDay)) or 0)
        covered = last is not None and last.covers
        if last is not None and last.started_at + WINDOW > now:
            start, day = last.started_at, count - 1
        else:
            day = count
    elif pace.daily_quota > 0:
        oldest = session.scalar(
            select(func.min(Delivery.sent_at)).where(Delivery.sent_at > now - WINDOW)
        )
        start = now if oldest is None else oldest
    left = waiting - min(today, waiting)
    j = 0
    while left > 0 and j < 10_000:
        j += 1
        allow = pace.daily_quota if pace.daily_quota > 0 else unlimited
        if pace.warmup_start > 0 and not covered and day is not None:
            allow = min(allow, pace.allowance(day + j))
        left -= allow
    finish = now if j == 0 else start + j * WINDOW
    return Forecast(waiting, min(today, waiting), finish, None if covered else day)


def warmup_state(session: Session) -> tuple[int, int, bool] | None:
    """The warm-up's last sending day: ``(day, allowance, covers)`` (day 0: the first), or
    ``None`` before the first."""
    last = session.scalars(select(PacingDay).order_by(PacingDay.id.desc()).limit(1)).first()
    if last is None:
        return None
    count = int(session.scalar(select(func.count()).select_from(PacingDay)) or 0)
    return count - 1, last.allowance, last.covers
