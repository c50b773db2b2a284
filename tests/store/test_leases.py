"""``outbox.extend_lease``: renews only the owner's rows still ``sending``, says how many, and on
PostgreSQL never waits for a row another transaction holds (the heartbeat and its own worker's
writes never block each other). Real SQLite and the real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import select, text

from tests.support.delivery import add_subscribers, make_issue
from weekly_mailer.config import Settings
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database, make_engine, upgrade
from weekly_mailer.store.models import Delivery

NOW = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(seconds=20)


def prepare(db: Database) -> list[int]:
    """Six rows: three leased to "w", one of them already sent, two to "other", one queued."""
    with db.sessions.begin() as s:
        add_subscribers(s, 6)
        outbox.enqueue(s, make_issue(s), now=NOW)
        mine, _ = outbox.claim(s, owner="w", now=NOW, lease_seconds=30, limit=3)
        outbox.claim(s, owner="other", now=NOW, lease_seconds=30, limit=2)
        done = outbox.Outcome(mine[0], "sent", code=250, at=NOW)
        outbox.record(s, [done], owner="w", now=NOW)
    return [r.delivery_id for r in mine]


def expiry(db: Database) -> dict[int, dt.datetime | None]:
    with db.sessions.begin() as s:
        rows = s.execute(select(Delivery.id, Delivery.lease_expires_at)).all()
        return {i: e for i, e in rows}


def test_extend_lease_renews_the_owners_sending_rows_only(database: Database) -> None:
    mine = prepare(database)
    before = expiry(database)
    with database.sessions.begin() as s:
        assert outbox.extend_lease(s, owner="w", now=LATER, lease_seconds=30) == 2
    after = expiry(database)
    renewed = {i for i in after if after[i] != before[i]}
    assert renewed == set(mine[1:])
    assert all(after[i] == LATER + dt.timedelta(seconds=30) for i in renewed)
    with database.sessions.begin() as s:
        assert outbox.extend_lease(s, owner="nobody", now=LATER, lease_seconds=30) == 0


@pytest.mark.postgres
def test_on_postgresql_extend_lease_skips_a_row_another_transaction_holds(
    pg_url: str, settings: Settings
) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    with Database(settings.replace(database_url=pg_url)) as db:
        mine = prepare(db)
        before = expiry(db)
        with db.engine.connect() as holder:  # the worker, writing a result for mine[1]
            holder.execute(
                select(Delivery.id).where(Delivery.id == mine[1]).with_for_update()
            ).all()
            started = time.monotonic()
            with db.sessions.begin() as s:
                s.execute(text("SET LOCAL lock_timeout = '5s'"))  # waiting would fail, slowly
                assert outbox.extend_lease(s, owner="w", now=LATER, lease_seconds=30) == 1
            assert time.monotonic() - started < 2
            holder.rollback()
        after = expiry(db)
        assert after[mine[1]] == before[mine[1]]  # left to the transaction that holds it
        assert after[mine[2]] == LATER + dt.timedelta(seconds=30)
        with db.sessions.begin() as s:  # free again: renewed next time
            assert outbox.extend_lease(s, owner="w", now=LATER, lease_seconds=30) == 2
