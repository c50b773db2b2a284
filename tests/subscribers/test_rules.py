"""Subscriber rules that no single command shows: pending expiry keeps consent history."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from weekly_mailer import subscribers as subs
from weekly_mailer.clock import utcnow
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Subscriber, SubscriberEvent


def test_expire_pending_forgets_only_sign_ups_that_never_completed(database: Database) -> None:
    long_ago = utcnow() - dt.timedelta(days=30)
    with database.sessions.begin() as s:
        stale = subs.request_subscription(s, "stale@example.org", source="web", now=long_ago)
        back = subs.request_subscription(s, "back@example.org", source="web", now=long_ago)
        assert stale is not None and back is not None
        subs.confirm(s, back, source="web", now=long_ago)
        subs.unsubscribe(s, back, source="web", now=long_ago)
        subs.add(s, "back@example.org", resubscribe=True, source="cli", now=long_ago)
        assert back.status == "pending"
        fresh = subs.request_subscription(s, "fresh@example.org", source="web")
        assert fresh is not None
    with database.sessions.begin() as s:
        gone = subs.expire_pending(s, older_than=utcnow() - dt.timedelta(days=7))
    assert gone == 1
    with database.sessions.begin() as s:
        left = sorted(s.scalars(select(Subscriber.email)))
        events = s.scalar(select(func.count()).select_from(SubscriberEvent))
    assert left == ["back@example.org", "fresh@example.org"]
    assert events == 5  # back: subscribed, confirmed, unsubscribed, resubscribed; fresh: subscribed


def test_complain_stops_mail_once_and_records_the_event(database: Database) -> None:
    at = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    with database.sessions.begin() as s:
        sub = subs.add(s, "angry@example.org", confirmed=True, source="cli")
        assert subs.complain(s, sub, source="bounces", detail="feedback report", now=at) is True
        assert subs.complain(s, sub, source="bounces", detail="again", now=at) is False
    with database.sessions.begin() as s:
        row = s.scalars(select(Subscriber).where(Subscriber.email == "angry@example.org")).one()
        kinds = list(
            s.execute(
                select(SubscriberEvent.kind, SubscriberEvent.source, SubscriberEvent.detail)
                .where(SubscriberEvent.subscriber_id == row.id)
                .order_by(SubscriberEvent.id)
            )
        )
    assert row.status == "complained"
    assert [tuple(k) for k in kinds] == [
        ("subscribed", "cli", ""),
        ("confirmed", "cli", ""),
        ("complained", "bounces", "feedback report"),
    ]
