"""Reading ``bounce_event`` and ``domain_pause`` back: refusals per issue by class, the domains
that block us, and the pauses in force. Every function takes a session and only reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select

from weekly_mailer.store.bounce_models import BounceEvent, BounceKind, DomainPause
from weekly_mailer.store.models import Delivery

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclasses.dataclass(frozen=True)
class DomainBlocks:
    domain: str
    blocks: int
    reason: str  # the latest block's reply
    last_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Pause:
    domain: str
    until: dt.datetime
    blocks: int
    reason: str

    def line(self) -> str:
        until = f"{self.until:%H:%M} UTC"
        return f"paused: {self.domain} until {until} ({self.blocks} blocks: {self.reason})"


@dataclasses.dataclass(frozen=True)
class IssueRefusals:
    by_kind: dict[str, int]  # every kind of bounce_event, zeros included
    blocked: list[DomainBlocks]  # the domains with the most blocks first
    pauses: list[Pause]  # pauses in force for those domains
    untrusted: int = 0  # reports about the issue tied to no message we sent: changed nobody


def _blocks_by_domain(session: Session, *where: Any, limit: int) -> list[DomainBlocks]:
    grouped = session.execute(
        select(
            BounceEvent.domain,
            func.count(),
            func.max(BounceEvent.id),
            func.max(BounceEvent.at),
        )
        .where(BounceEvent.kind == BounceKind.BLOCK.value, *where)
        .group_by(BounceEvent.domain)
        .order_by(func.count().desc(), BounceEvent.domain)
        .limit(limit)
    ).all()
    ids = [int(r[2]) for r in grouped]
    found = session.execute(
        select(BounceEvent.id, BounceEvent.reason).where(BounceEvent.id.in_(ids))
    )
    reasons = {int(i): str(r) for i, r in found}
    return [
        DomainBlocks(str(d), int(n), reasons.get(int(i), ""), _aware(at)) for d, n, i, at in grouped
    ]


def issue_refusals(
    session: Session, issue_id: int, *, now: dt.datetime, limit: int = 5
) -> IssueRefusals:
    """The bounce events recorded for one issue (send-time refusals and reports), by class,
    and the domains that blocked it."""
    of_issue = or_(  # tied by the report's Message-ID, or by the delivery (send time, VERP)
        BounceEvent.issue_id == issue_id,
        BounceEvent.delivery_id.in_(
            select(Delivery.id).where(Delivery.issue_id == issue_id).scalar_subquery()
        ),
    )
    grouped = session.execute(
        select(BounceEvent.kind, func.count())
        .where(of_issue, BounceEvent.trusted.is_(True))
        .group_by(BounceEvent.kind)
    )
    counts = {str(k): int(n) for k, n in grouped}
    untrusted = session.scalar(
        select(func.count(func.distinct(BounceEvent.message_id))).where(
            of_issue, BounceEvent.trusted.is_(False)
        )
    )
    blocked = _blocks_by_domain(session, of_issue, BounceEvent.trusted.is_(True), limit=limit)
    domains = [b.domain for b in blocked]
    return IssueRefusals(
        by_kind={k.value: int(counts.get(k.value, 0)) for k in BounceKind},
        blocked=blocked,
        pauses=[p for p in pauses_in_force(session, now=now) if p.domain in domains],
        untrusted=int(untrusted or 0),
    )


def recent_blocks(
    session: Session, *, now: dt.datetime, hours: float = 24, limit: int = 10
) -> list[DomainBlocks]:
    """The domains that blocked us (at send time or in reports) in the last ``hours``."""
    since = now - dt.timedelta(hours=hours)
    return _blocks_by_domain(session, BounceEvent.at >= since, limit=limit)


def pauses_in_force(session: Session, *, now: dt.datetime) -> list[Pause]:
    """The domains sending is paused to now, the one paused longest first."""
    rows = session.scalars(
        select(DomainPause).where(DomainPause.until > now).order_by(DomainPause.until.desc())
    )
    return [Pause(p.domain, p.until, p.blocks, p.reason) for p in rows]


def _aware(value: dt.datetime | str) -> dt.datetime:
    # Aggregates bypass the column type on SQLite: parse the stored UTC text ourselves.
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
