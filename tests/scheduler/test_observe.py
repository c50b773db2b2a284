"""The scheduler's gauges after each run of the weekly job: next fire time, last outcome,
leader or standby (two daemons on PostgreSQL), and ``error`` when the job crashed."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.pool import NullPool

from weekly_mailer import metrics
from weekly_mailer.config import Settings
from weekly_mailer.scheduler.daemon import Daemon
from weekly_mailer.scheduler.job import WeeklyJob
from weekly_mailer.scheduler.leader import AdvisoryLockLeader
from weekly_mailer.store.db import Database, make_engine, make_sessionmaker, upgrade

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)  # a Wednesday, before the 18:00 PT send


def gauges() -> dict[str, float]:
    out: dict[str, float] = {}
    for family in metrics.REGISTRY.collect():
        for s in family.samples:
            if s.name.startswith("weekly_mailer_scheduler_"):
                key = s.name.removeprefix("weekly_mailer_scheduler_")
                out[f"{key}:{s.labels['outcome']}" if "outcome" in s.labels else key] = s.value
    return out


def last_outcome(g: dict[str, float]) -> list[str]:
    return [k.split(":", 1)[1] for k, v in g.items() if k.startswith("last_outcome:") and v == 1]


@pytest.mark.postgres
def test_leader_and_standby_on_postgresql(settings: Settings, pg_url: str) -> None:
    engine = make_engine(pg_url, poolclass=NullPool)
    upgrade(engine)
    settings = settings.replace(database_url=pg_url)
    other = AdvisoryLockLeader(engine)
    assert other.acquire()  # another daemon leads
    with Database(settings) as db:
        job = WeeklyJob(
            settings, db.sessions, clock=lambda: NOW, leadership=AdvisoryLockLeader(engine)
        )
        daemon = Daemon(job)
        try:
            daemon._reconcile()
            standby = gauges()
            other.release()
            daemon._reconcile()
            leading = gauges()
        finally:
            job.leadership.release()
            other.release()
    engine.dispose()
    expected_fire = dt.datetime(2026, 12, 3, 2, 0, tzinfo=dt.UTC).timestamp()  # 18:00 PST
    assert standby["leader"] == 0 and last_outcome(standby) == ["standby"]
    assert leading["leader"] == 1 and last_outcome(leading) == ["nothing"]
    for g in (standby, leading):
        assert g["next_fire_timestamp_seconds"] == expected_fire
        assert g["last_run_timestamp_seconds"] == NOW.timestamp()


def test_a_crashed_job_is_outcome_error(settings: Settings) -> None:
    engine = make_engine(settings.database_url)  # never migrated: the job's query fails
    job = WeeklyJob(settings, make_sessionmaker(engine), clock=lambda: NOW)
    Daemon(job)._reconcile()
    engine.dispose()
    g = gauges()
    assert last_outcome(g) == ["error"]
    assert (
        g["next_fire_timestamp_seconds"] == dt.datetime(2026, 12, 3, 2, tzinfo=dt.UTC).timestamp()
    )
