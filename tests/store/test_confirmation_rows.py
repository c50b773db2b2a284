"""Confirmation rows in the outbox: enqueued with the request, claimed with sending issues or
alone, skipped when no longer needed, counted nowhere per issue, their failures lifting the
daily limit (but not a 5xx refusal) — on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from tests.support.delivery import SimpleRenderers, add_subscribers, make_issue
from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends.base import Envelope
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.delivery.worker import Worker
from weekly_mailer.errors import PermanentFailure, TemporaryFailure
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database, make_engine, upgrade
from weekly_mailer.store.models import Delivery, DeliveryKind, Subscriber, SubscriberStatus
from weekly_mailer.subscribers.confirmations import Queued, request_confirmation

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def pending(db: Database, email: str) -> int:
    with db.sessions.begin() as s:
        return subs.add(s, email, source="test").id


def ask(db: Database, sub_id: int, *, now: dt.datetime = NOW) -> Queued:
    with db.sessions.begin() as s:
        sub = s.get(Subscriber, sub_id)
        assert sub is not None
        return request_confirmation(s, sub, per_day=1, source="test", now=now).outcome


def rows(db: Database) -> list[tuple[str, int | None, str]]:
    with db.sessions.begin() as s:
        return [
            (k, i, st)
            for k, i, st in s.execute(
                select(Delivery.kind, Delivery.issue_id, Delivery.status).order_by(Delivery.id)
            )
        ]


def _claims_both_kinds(db: Database, settings: Settings) -> None:
    ann = pending(db, "ann@example.org")
    assert ask(db, ann) == Queued.QUEUED
    assert ask(db, ann) == Queued.WAITING  # not doubled while it waits
    with db.sessions.begin() as s:
        add_subscribers(s, 3)
        issue = make_issue(s)
        outbox.enqueue(s, issue, now=NOW)
        issue_id = issue.id
        # Counts per issue know nothing of the confirmation.
        assert outbox.counts(s, issue_id)["queued"] == 3
        only, _ = outbox.claim(
            s, owner="c", now=NOW, lease_seconds=60, limit=10, kind=DeliveryKind.CONFIRMATION
        )
        assert [(r.kind, r.issue_id, r.email) for r in only] == [
            ("confirmation", None, "ann@example.org")
        ]
        assert outbox.release(s, owner="c") == 1
        both, _ = outbox.claim(s, owner="w", now=NOW, lease_seconds=60, limit=2)
        assert both[0].kind == "confirmation"  # a person is waiting for it: first
        assert both[1].issue_id == issue_id
        outbox.release(s, owner="w")
    backend = MemoryBackend()
    stats = Worker(db.sessions, settings, backend, SimpleRenderers()).run(max_wait=0)
    assert stats.sent == 4
    assert backend.sent[0].recipient == "ann@example.org"
    assert rows(db)[0] == ("confirmation", None, "sent")
    with db.sessions.begin() as s:
        still = s.get(Subscriber, ann)
        assert still is not None and still.status == SubscriberStatus.PENDING  # the link acts


def test_claims_both_kinds_on_sqlite(database: Database, settings: Settings) -> None:
    _claims_both_kinds(database, settings)


@pytest.mark.postgres
def test_claims_both_kinds_on_postgresql(settings: Settings, pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    pg = settings.replace(database_url=pg_url)
    with Database(pg) as db:
        _claims_both_kinds(db, pg)


def test_a_confirmed_or_complained_subscriber_is_skipped(
    database: Database, settings: Settings
) -> None:
    ann, bob = pending(database, "ann@example.org"), pending(database, "bob@example.org")
    ask(database, ann)
    ask(database, bob)
    with database.sessions.begin() as s:
        a, b = s.get(Subscriber, ann), s.get(Subscriber, bob)
        assert a is not None and b is not None
        subs.confirm(s, a, source="test")
        b.status = SubscriberStatus.COMPLAINED.value
    backend = MemoryBackend()
    stats = Worker(
        database.sessions, settings, backend, SimpleRenderers(), kind="confirmation"
    ).run(max_wait=0)
    assert (stats.sent, stats.skipped, backend.sent) == (0, 2, [])
    assert [r[2] for r in rows(database)] == ["skipped", "skipped"]


def test_a_failure_lifts_the_daily_limit_and_a_refusal_does_not(
    database: Database, settings: Settings
) -> None:
    ann, bob = pending(database, "ann@example.org"), pending(database, "bob@example.org")
    ask(database, ann)
    ask(database, bob)

    def handler(env: Envelope) -> None:
        if env.recipient == "bob@example.org":
            raise PermanentFailure("550 no such user", code=550)
        raise TemporaryFailure("451 later", code=451)

    clock = [NOW]
    worker = Worker(
        database.sessions,
        settings,
        MemoryBackend(handler),
        SimpleRenderers(),
        kind="confirmation",
        clock=lambda: clock[0],
    )
    worker.run(max_wait=0)
    soon = NOW + dt.timedelta(minutes=1)
    assert ask(database, ann, now=soon) == Queued.WAITING  # deferred: still in the outbox
    assert ask(database, bob, now=soon) == Queued.LIMITED  # refused (5xx): the limit holds
    with database.sessions.begin() as s:
        sent_at = {sub.email: sub.confirmation_sent_at for sub in s.scalars(select(Subscriber))}
    assert sent_at == {"ann@example.org": NOW, "bob@example.org": NOW}
    # Given up (not sent within retry_give_up_hours): the one e-mail leaves the count.
    clock[0] = NOW + dt.timedelta(hours=settings.retry_give_up_hours + 1)
    worker.run(max_wait=0)
    assert [r[2] for r in rows(database)] == ["failed", "failed"]
    with database.sessions.begin() as s:
        a = s.get(Subscriber, ann)
        assert a is not None and a.confirmation_sent_at is None
        from weekly_mailer.subscribers.optin import confirmations_sent_since

        assert confirmations_sent_since(s, a, NOW - dt.timedelta(days=1)) == 0
