"""Pausing one receiving domain: its waiting rows wait until the pause ends."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from weekly_mailer.store.models import DUE_STATES, Delivery, Subscriber


def _like_domain(domain: str) -> str:
    escaped = domain.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%@{escaped}"


def pause_domain(session: Session, domain: str, *, until: dt.datetime) -> int:
    """Move the next attempt of every waiting (queued or deferred) row to an address at
    ``domain`` to ``until``, in one UPDATE; rows due later already, and rows claimed in
    flight, are left alone. Returns how many rows moved."""
    at_domain = select(Subscriber.id).where(
        Subscriber.email_key.like(_like_domain(domain), escape="\\")
    )
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.status.in_([s.value for s in DUE_STATES]),
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at < until),
            Delivery.subscriber_id.in_(at_domain.scalar_subquery()),
        )
        .values(next_attempt_at=until)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
