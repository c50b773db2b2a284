"""List health: each issue's hard-bounce and complaint rates, and the guard that holds the next
weekly send when one passes its limit.

- **Delivered**: the issue's copies the server took (rows ``sent``). **Refused**: rows failed
  with a 5xx at send time.
- **Hard bounces**: the issue's recipients with a ``hard`` ``bounce_event`` (a report ingested
  later, or the reply at send time), plus refused rows that have no ``bounce_event`` at all (a
  refusal recorded before send-time classes existed counts as hard, as ``bounce_limit`` did).
- **Complaints**: the issue's recipients with a ``complaint`` ``bounce_event`` (ARF abuse,
  fraud, virus). Each recipient counts once, however many reports name them.
- Only **trusted** rows count (``bounce_event.trusted``: the report was tied to a message we
  sent that reader, see :mod:`weekly_mailer.bounces.intake`), and only rows about a reader the
  issue was sent to (a row of theirs in ``delivery`` for the issue): a forged report, or one
  reader's reports naming others, moves no rate.
- A ``bounce_event`` belongs to an issue by its ``issue_id`` (filled from the Message-ID the
  report quotes) or by its ``delivery_id``'s issue, whichever path filled it.
- Hard-bounce rate = hard bounces / (delivered + refused); complaint rate = complaints /
  delivered; 0 when nothing was delivered. A rate *passes* its limit when it is above it:
  exactly at the limit holds nothing.

The guard (:func:`guard`) looks at issues whose rows are all done (``sent``), finished within
:data:`LOOKBACK`, that have not held the send before. One passing a limit gets a ``week_hold``
row (:mod:`.ledger`) naming the next send week not sent yet, the rate and the figures. While any
hold is unreleased, :func:`held` answers it and no new issue is made (the daemon's job and
``send`` ask); ``issues release`` releases it. An issue holds the send at most once, so more
reports about a released issue do not hold it again. Functions take a session; none commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import exists, func, or_, select

from weekly_mailer.issues.ledger import (
    PREFLIGHT_REASON,
    active_holds,
    holds_of,
    next_unsent_week,
    place_hold,
    release_holds,
)
from weekly_mailer.store import outbox
from weekly_mailer.store.bounce_models import BounceEvent, BounceKind
from weekly_mailer.store.hold_models import WeekHold
from weekly_mailer.store.models import Delivery, DeliveryStatus, Issue, IssueStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.config import Settings

# Issues finished longer ago than this are not looked at again: old news holds nothing.
LOOKBACK = dt.timedelta(days=28)


@dataclasses.dataclass(frozen=True, slots=True)
class IssueHealth:
    """One issue's figures and rates."""

    issue_id: int
    send_week: dt.date
    delivered: int
    refused: int
    hard_bounces: int
    complaints: int

    @property
    def bounce_rate(self) -> float:
        sent = self.delivered + self.refused
        return self.hard_bounces / sent if sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.delivered if self.delivered else 0.0

    def passed(self, settings: Settings) -> list[str]:
        """What passes its limit, one phrase each with the figures (empty: healthy)."""
        out = []
        if self.complaint_rate > settings.complaint_rate_limit:
            out.append(
                f"complaint rate {self.complaint_rate:.2%} ({self.complaints} complaints of "
                f"{self.delivered} delivered) is above complaint_rate_limit "
                f"{settings.complaint_rate_limit:.2%}"
            )
        if self.bounce_rate > settings.bounce_rate_limit:
            out.append(
                f"hard-bounce rate {self.bounce_rate:.2%} ({self.hard_bounces} hard bounces of "
                f"{self.delivered + self.refused} sent) is above bounce_rate_limit "
                f"{settings.bounce_rate_limit:.2%}"
            )
        return out

    def line(self) -> str:
        """``delivered 580, refused 3, hard bounces 2 (0.34%), complaints 1 (0.17%)``."""
        return (
            f"delivered {self.delivered}, refused {self.refused}, hard bounces "
            f"{self.hard_bounces} ({self.bounce_rate:.2%}), complaints {self.complaints} "
            f"({self.complaint_rate:.2%})"
        )


def issue_health(session: Session, issue_id: int) -> IssueHealth:
    """The figures and rates of one issue (see the module docstring for what counts)."""
    issue = session.get(Issue, issue_id)
    week = issue.send_week if issue is not None else dt.date.min
    delivered = session.scalar(
        select(func.count()).where(
            Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.SENT.value
        )
    )
    refused = session.scalar(select(func.count()).where(outbox.refused(issue_id)))
    hard: set[int] = set()
    complaints: set[int] = set()
    sent_to = select(Delivery.subscriber_id).where(Delivery.issue_id == issue_id)
    events = session.execute(
        select(BounceEvent.kind, BounceEvent.subscriber_id)
        .outerjoin(Delivery, Delivery.id == BounceEvent.delivery_id)
        .where(
            BounceEvent.kind.in_([BounceKind.HARD.value, BounceKind.COMPLAINT.value]),
            or_(BounceEvent.issue_id == issue_id, Delivery.issue_id == issue_id),
            BounceEvent.trusted.is_(True),
            BounceEvent.subscriber_id.in_(sent_to.scalar_subquery()),
        )
    )
    for kind, subscriber_id in events:
        (hard if kind == BounceKind.HARD.value else complaints).add(int(subscriber_id or 0))
    unclassed = select(Delivery.subscriber_id).where(
        outbox.refused(issue_id),
        ~exists().where(BounceEvent.delivery_id == Delivery.id),
    )
    hard.update(int(sid) for sid in session.scalars(unclassed))
    return IssueHealth(
        issue_id, week, int(delivered or 0), int(refused or 0), len(hard), len(complaints)
    )


def guard(
    session: Session,
    settings: Settings,
    *,
    now: dt.datetime,
    issue_ids: Iterable[int] | None = None,
) -> list[WeekHold]:
    """Hold the next weekly send for each finished issue whose rates pass a limit (the issues
    finished within :data:`LOOKBACK`, or those of ``issue_ids`` among them); returns the new
    holds. Idempotent: an issue that held the send once never holds it again."""
    query = select(Issue.id).where(
        Issue.status == IssueStatus.SENT.value, Issue.finished_at >= now - LOOKBACK
    )
    if issue_ids is not None:
        wanted = sorted(set(issue_ids))
        if not wanted:
            return []
        query = query.where(Issue.id.in_(wanted))
    candidates = [int(i) for i in session.scalars(query.order_by(Issue.send_week))]
    done = holds_of(session, candidates)
    placed = []
    for issue_id in candidates:
        if issue_id in done:
            continue
        health = issue_health(session, issue_id)
        passed = health.passed(settings)
        if not passed:
            continue
        week = next_unsent_week(session, health.send_week)
        reason = f"issue #{issue_id} (week of {health.send_week}): " + "; ".join(passed)
        hold = place_hold(
            session,
            WeekHold(
                send_week=week,
                issue_id=issue_id,
                reason=reason,
                delivered=health.delivered,
                refused=health.refused,
                hard_bounces=health.hard_bounces,
                complaints=health.complaints,
                held_at=now,
                released_by="",
            ),
        )
        if hold is not None:
            placed.append(hold)
    return placed


def held(session: Session, settings: Settings, *, now: dt.datetime) -> WeekHold | None:
    """The hold that stops a new issue now, if any (after the guard has looked at the issues
    finished lately, so an issue that just finished holds the very next send)."""
    guard(session, settings, now=now)
    holds = active_holds(session)
    return holds[0] if holds else None


def refusal(hold: WeekHold) -> str:
    """The one line ``send`` and the daemon give for a held week."""
    by = "the pre-flight" if hold.reason.startswith(PREFLIGHT_REASON) else "the list-health guard"
    return (
        f"the weekly send is held from the week of {hold.send_week} on by {by}: "
        f"{hold.reason}; nothing was sent (after checking the list, release it with "
        f"`weekly-mailer issues release {hold.send_week}`)"
    )


__all__ = [
    "LOOKBACK",
    "IssueHealth",
    "guard",
    "held",
    "issue_health",
    "refusal",
    "release_holds",
]
