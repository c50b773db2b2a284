"""The database gauges read at scrape time: outbox depth, list health, reports; a short cache;
a locked or unreachable database is ``weekly_mailer_database_up 0``, never an exception."""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.pool import NullPool

from tests.support.delivery import add_subscribers, make_issue
from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.store import outbox
from weekly_mailer.store.bounce_models import BounceEvent
from weekly_mailer.store.db import Database, make_engine, upgrade
from weekly_mailer.store.gauges import DatabaseCollector
from weekly_mailer.store.outbox import Outcome

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(collector: DatabaseCollector) -> Samples:
    """What Prometheus would read: the collector in a registry, exposed and parsed again."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def depth(samples: Samples, kind: str, state: str) -> float:
    key = ("weekly_mailer_outbox_depth", frozenset({("kind", kind), ("state", state)}))
    return samples[key]


def fill(db: Database) -> None:
    """10 copies queued; 3 claimed of which 2 sent; a hard bounce and a complaint after."""
    with db.sessions.begin() as s:
        emails = add_subscribers(s, 10)
        outbox.enqueue(s, make_issue(s), now=NOW)
        pending = subs.add(s, "new@example.org")
        outbox.enqueue_confirmation(s, pending.id, now=NOW)
    with db.sessions.begin() as s:
        rows, _ = outbox.claim(s, owner="w", now=NOW, lease_seconds=60, limit=3, kind="issue")
        outbox.record(s, [Outcome(r, "sent", code=250) for r in rows[:2]], owner="w", now=NOW)
    with db.sessions.begin() as s:
        s.add(BounceEvent(at=NOW + dt.timedelta(minutes=1), kind="hard", recipient=emails[0]))
        s.add(BounceEvent(at=NOW - dt.timedelta(days=9), kind="hard", recipient="old@x.org"))
        s.add(BounceEvent(at=NOW, kind="block", recipient=emails[1]))
        sub = subs.get_by_email(s, emails[1])
        assert sub is not None
        subs.complain(s, sub, source="bounces", detail="test", now=NOW + dt.timedelta(minutes=2))


def check_filled(samples: Samples) -> None:
    assert samples[("weekly_mailer_database_up", frozenset())] == 1
    assert depth(samples, "issue", "queued") == 7
    assert depth(samples, "issue", "sending") == 1
    assert depth(samples, "issue", "deferred") == 0
    assert depth(samples, "confirmation", "queued") == 1
    assert samples[("weekly_mailer_list_health_issue_sent", frozenset())] == 2
    rate = "weekly_mailer_list_health_rate"
    assert samples[(rate, frozenset({("rate", "hard_bounce")}))] == 0.5  # 1 since, per 2 sent
    assert samples[(rate, frozenset({("rate", "complaint")}))] == 0.5
    reports = "weekly_mailer_bounce_reports_total"
    assert samples[(reports, frozenset({("kind", "hard")}))] == 2
    assert samples[(reports, frozenset({("kind", "block")}))] == 1
    assert samples[("weekly_mailer_complaints_total", frozenset())] == 1


def test_gauges_read_the_outbox_and_the_list_health(database: Database) -> None:
    fill(database)
    check_filled(scrape(DatabaseCollector(database.engine)))


@pytest.mark.postgres
def test_gauges_on_postgresql(settings: Settings, pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    with Database(settings.replace(database_url=pg_url)) as db:
        fill(db)
        check_filled(scrape(DatabaseCollector(db.engine)))


def test_a_writer_holding_the_sqlite_lock_does_not_hold_up_a_scrape(database: Database) -> None:
    fill(database)
    with database.engine.connect() as writer:
        writer.exec_driver_sql("DELETE FROM bounce_event")  # BEGIN IMMEDIATE: the write lock
        started = time.monotonic()
        samples = scrape(DatabaseCollector(database.engine))
        elapsed = time.monotonic() - started
        writer.rollback()
    assert elapsed < 5  # the busy timeout is 30 s: a reader that wanted the lock would wait
    check_filled(samples)  # what was committed, not the writer's uncommitted delete


def test_an_unreachable_database_is_up_0_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none",
        poolclass=NullPool,
        connect_args={"connect_timeout": 2},
    )
    with caplog.at_level(logging.WARNING, logger="weekly_mailer.store.gauges"):
        samples = scrape(DatabaseCollector(engine, cache_seconds=0))
        again = scrape(DatabaseCollector(engine, cache_seconds=0))
    assert samples == {("weekly_mailer_database_up", frozenset()): 0}
    assert again == samples
    assert any("metrics: cannot read the database" in r.getMessage() for r in caplog.records)


def test_the_reading_is_cached_for_a_few_seconds(database: Database) -> None:
    clock = [100.0]
    collector = DatabaseCollector(database.engine, cache_seconds=2, monotonic=lambda: clock[0])
    assert depth(scrape(collector), "issue", "queued") == 0
    with database.sessions.begin() as s:
        add_subscribers(s, 4)
        outbox.enqueue(s, make_issue(s), now=NOW)
    clock[0] += 1.5
    assert depth(scrape(collector), "issue", "queued") == 0  # cached: no query
    clock[0] += 1.0
    assert depth(scrape(collector), "issue", "queued") == 4


def test_expire_makes_the_next_scrape_read_the_database(database: Database) -> None:
    clock = [100.0]
    collector = DatabaseCollector(database.engine, cache_seconds=2, monotonic=lambda: clock[0])
    assert depth(scrape(collector), "issue", "queued") == 0
    with database.sessions.begin() as s:
        add_subscribers(s, 3)
        outbox.enqueue(s, make_issue(s), now=NOW)
    assert depth(scrape(collector), "issue", "queued") == 0  # cached
    collector.expire()  # the command's work ended
    assert depth(scrape(collector), "issue", "queued") == 3
