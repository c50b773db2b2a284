"""Send-time refusals: what each means (the classifier, ``bounces.classify``), recorded as a
``bounce_event`` row in the same transaction as the outcome, and the per-domain block pause.

- A 5xx the server gave us is classified from its code, enhanced status and text: ``hard``
  (the only kind that counts toward ``bounce_limit``: ``results.counts_as_bounce``), ``soft``,
  ``block`` or ``unknown``. A row that was deferred until ``retry_give_up_hours`` and finally
  failed is ``expired`` (``block`` when its replies were a block).
- A burst of blocks from one receiving domain (``block_pause_threshold`` within
  ``block_pause_window_minutes``) pauses sending to that domain for ``block_pause_minutes``:
  its waiting rows get their next attempt moved to the end of the pause in one UPDATE
  (``outbox.pause_domain``), and a ``domain_pause`` row says so. Rows already claimed go on.
  Blocks never touch the subscriber.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from weekly_mailer.bounces.classify import Classification, Kind, classify
from weekly_mailer.errors import PermanentFailure
from weekly_mailer.store import outbox
from weekly_mailer.store.bounce_models import BounceEvent, BounceKind, BounceSource, DomainPause
from weekly_mailer.store.models import DeliveryStatus
from weekly_mailer.store.outbox import Outcome

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

log = logging.getLogger(__name__)
GAVE_UP = "gave up after "  # how the worker words a deferred row's final failure


@dataclasses.dataclass(frozen=True)
class PauseRule:
    """When a burst of blocks pauses a domain, and for how long."""

    threshold: int = 10
    window: dt.timedelta = dt.timedelta(minutes=10)
    length: dt.timedelta = dt.timedelta(minutes=30)

    @classmethod
    def of(cls, settings: Settings) -> PauseRule:
        return cls(
            threshold=settings.block_pause_threshold,
            window=dt.timedelta(minutes=settings.block_pause_window_minutes),
            length=dt.timedelta(minutes=settings.block_pause_minutes),
        )


def classify_failure(failure: PermanentFailure) -> Classification:
    """The class of a refusal a backend raised (its code and full reply)."""
    return classify(None, failure.code, str(failure))


def outcome_class(o: Outcome) -> Classification | None:
    """The class of a failed outcome the server caused, ``None`` for any other outcome."""
    if o.status != DeliveryStatus.FAILED.value:
        return None
    if o.code is not None and 500 <= o.code <= 599:
        return classify(None, o.code, o.error)
    if o.error.startswith(GAVE_UP):
        c = classify(None, o.code, o.error.partition(": ")[2] or o.error)
        kind = Kind.BLOCK if c.kind is Kind.BLOCK else Kind.EXPIRED
        return dataclasses.replace(c, kind=kind, reason=o.error[:500])
    return None


def record_refusals(
    session: Session, outcomes: Sequence[Outcome], *, now: dt.datetime, rule: PauseRule
) -> list[DomainPause]:
    """One ``bounce_event`` per refusal in ``outcomes``; then pause each domain whose blocks
    reach ``rule``. Returns the pauses started (or extended to new rows) now."""
    blocks: Counter[str] = Counter()
    for o in outcomes:
        c = outcome_class(o)
        if c is None:
            continue
        domain = o.row.email_key.rpartition("@")[2][:255]
        session.add(
            BounceEvent(
                at=now,
                kind=BounceKind(c.kind.value).value,
                subscriber_id=o.row.subscriber_id,
                delivery_id=o.row.delivery_id,
                issue_id=o.row.issue_id,
                recipient=o.row.email_key[:320],
                domain=domain,
                status=c.status[:20],
                code=c.code,
                reason=c.reason,
                source=BounceSource.SMTP.value,
            )
        )
        if c.kind is Kind.BLOCK:
            blocks[domain] += 1
    if not blocks:
        return []
    session.flush()
    return [p for d, n in blocks.items() if (p := _maybe_pause(session, d, n, now, rule))]


def _maybe_pause(
    session: Session, domain: str, new: int, now: dt.datetime, rule: PauseRule
) -> DomainPause | None:
    pause = session.scalar(select(DomainPause).where(DomainPause.domain == domain))
    if pause is not None and pause.until > now:  # paused already: rows queued since wait too
        pause.blocks += new
        pause.rows_moved += outbox.pause_domain(session, domain, until=pause.until)
        return None
    since = now - rule.window
    if pause is not None and pause.until > since:
        since = pause.until  # the blocks of the last pause do not start another
    recent = (
        BounceEvent.domain == domain,
        BounceEvent.kind == BounceKind.BLOCK.value,
        BounceEvent.source == BounceSource.SMTP.value,
        BounceEvent.at >= since,
    )
    count = int(session.scalar(select(func.count()).where(*recent)) or 0)
    if count < rule.threshold:
        return None
    latest = select(BounceEvent.reason).where(*recent).order_by(BounceEvent.id.desc()).limit(1)
    reason = session.scalar(latest)
    until = now + rule.length
    if pause is None:
        pause = DomainPause(domain=domain, started_at=now, until=until, blocks=count)
        try:  # another worker (PostgreSQL) may pause the same domain at the same moment
            with session.begin_nested():
                session.add(pause)
        except IntegrityError:
            return None  # it did: its pause moved the rows
    pause.started_at, pause.until, pause.blocks = now, until, count
    pause.reason = str(reason or "")
    pause.rows_moved = outbox.pause_domain(session, domain, until=until)
    log.warning(
        "paused sending to %s until %s UTC (%d blocks: %s); %d waiting deliveries moved",
        domain,
        f"{until:%H:%M}",
        count,
        pause.reason,
        pause.rows_moved,
    )
    return pause
