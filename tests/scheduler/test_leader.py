"""Leader election on PostgreSQL: one advisory-lock holder, the others stand by and take over."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo

import pytest
from sqlalchemy import select, text

from weekly_mailer.config import Settings
from weekly_mailer.scheduler.catchup import StartAction
from weekly_mailer.scheduler.job import WeeklyJob
from weekly_mailer.scheduler.leader import AdvisoryLockLeader, AlwaysLeader, leadership_for
from weekly_mailer.store.db import Database, make_engine, upgrade
from weekly_mailer.store.models import Issue

LA = zoneinfo.ZoneInfo("America/Los_Angeles")

pytestmark = pytest.mark.postgres


def test_one_leader_at_a_time_and_takeover(pg_url: str) -> None:
    engine_a, engine_b = make_engine(pg_url), make_engine(pg_url)
    try:
        a, b = leadership_for(engine_a), leadership_for(engine_b)
        assert isinstance(a, AdvisoryLockLeader) and isinstance(b, AdvisoryLockLeader)
        assert a.acquire() is True
        assert b.acquire() is False
        assert a.acquire() is True  # still ours
        assert b.acquire() is False
        a.release()
        assert b.acquire() is True
        assert a.acquire() is False
        b.release()
        b.release()  # twice is fine
        a.release()  # a standby holds a connection too: release it
    finally:
        engine_a.dispose()
        engine_b.dispose()


def test_a_dead_leader_hands_over(pg_url: str) -> None:
    """The lock belongs to the leader's connection: when it dies, a standby takes over."""
    engine_a, engine_b = make_engine(pg_url), make_engine(pg_url)
    try:
        a, b = AdvisoryLockLeader(engine_a), AdvisoryLockLeader(engine_b)
        assert a.acquire()
        assert not b.acquire()
        # Only the leader's own connection dies: the server is shared with other tests.
        assert a._conn is not None
        leader_pid = a._conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine_b.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": leader_pid})
            admin.commit()
            # The signal is asynchronous: wait until the backend (and its lock) is gone.
            alive = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
            deadline = time.monotonic() + 20
            while admin.execute(alive, {"pid": leader_pid}).scalar_one() and (
                time.monotonic() < deadline
            ):
                admin.rollback()
                time.sleep(0.05)
        assert b.acquire()
        assert not a.acquire()  # it notices the lost connection and stands by
        b.release()
        assert a.acquire()  # and can lead again later
        a.release()
    finally:
        engine_a.dispose()
        engine_b.dispose()


def test_standby_daemon_does_not_run_the_job(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    settings = Settings(database_url=pg_url, secret_key="k")
    wed = dt.datetime(2026, 11, 25, 18, tzinfo=LA)
    with Database(settings) as db_a, Database(settings) as db_b:

        leader = WeeklyJob(
            settings,
            db_a.sessions,
            clock=lambda: wed,
            leadership=leadership_for(db_a.engine),
        )
        standby = WeeklyJob(
            settings,
            db_b.sessions,
            clock=lambda: wed,
            leadership=leadership_for(db_b.engine),
        )
        assert leader.reconcile() is StartAction.CATCH_UP  # records the week as skipped
        assert standby.reconcile() is None
        leader.leadership.release()
        assert standby.reconcile() is StartAction.NOTHING  # leads now; the week is recorded
        standby.leadership.release()
        with db_a.sessions.begin() as session:
            rows = session.scalars(select(Issue)).all()
            assert [(r.send_week, r.status) for r in rows] == [(dt.date(2026, 11, 25), "skipped")]


def test_sqlite_needs_no_lock(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    try:
        assert isinstance(leadership_for(engine), AlwaysLeader)
    finally:
        engine.dispose()
