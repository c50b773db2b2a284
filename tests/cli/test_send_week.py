"""One week rule: the daemon's job, `send` and `demo` store the same send week for one moment.

Each runs for real (its own SQLite database, the file backend) at the same injected moment: the
job with its ``clock``, `send` and `demo` with the clock of the click context object
(``AppContext``), which is what the public ``main`` group builds with the real clock.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tests.support.send import Workspace
from weekly_mailer.cli._common import AppContext
from weekly_mailer.cli.demo import demo
from weekly_mailer.cli.send import send
from weekly_mailer.config import load_settings
from weekly_mailer.scheduler.catchup import StartAction
from weekly_mailer.scheduler.job import WeeklyJob
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Issue

UTC = dt.UTC

MOMENTS = [
    # Thursday 01:30 UTC in summer = Wednesday 18:30 PDT: the UTC date is not the send week.
    (dt.datetime(2026, 7, 2, 1, 30, tzinfo=UTC), dt.date(2026, 7, 1)),
    # The Wednesday after the spring change (2026-03-08): 01:30 UTC is 18:30 PDT, after the
    # 18:00 send (the same UTC time the week before was 17:30 PST, before it).
    (dt.datetime(2026, 3, 12, 1, 30, tzinfo=UTC), dt.date(2026, 3, 11)),
    # The Wednesday after the autumn change (2026-11-01): 18:30 PST is 02:30 UTC on Thursday.
    (dt.datetime(2026, 11, 5, 2, 30, tzinfo=UTC), dt.date(2026, 11, 4)),
]


def clock_from(moment: dt.datetime) -> Callable[[], dt.datetime]:
    """A clock that reads ``moment`` at first and then runs at the real pace."""
    started = time.monotonic()
    return lambda: moment + dt.timedelta(seconds=time.monotonic() - started)


def stored_weeks(settings_path: Path) -> list[tuple[dt.date, str]]:
    settings = load_settings(settings_path, environ={})
    with Database(settings) as db, db.sessions.begin() as session:
        rows = session.execute(select(Issue.send_week, Issue.status).order_by(Issue.id)).all()
        return [(week, status) for week, status in rows]


def run_job(root: Path, moment: dt.datetime) -> list[tuple[dt.date, str]]:
    root.mkdir()
    ws = Workspace(root, backend_url=f"file://{root / 'outbox'}")
    ws.add_subscribers(3)
    with Database(ws.settings) as db:
        # A daemon running since an hour before the send time, asked at the moment.
        job = WeeklyJob(
            ws.settings,
            db.sessions,
            clock=lambda: moment,
            started_at=moment - dt.timedelta(hours=1),
        )
        assert job.reconcile() is StartAction.CATCH_UP
    return stored_weeks(ws.config)


def run_send(root: Path, moment: dt.datetime) -> list[tuple[dt.date, str]]:
    root.mkdir()
    ws = Workspace(root, backend_url=f"file://{root / 'outbox'}")
    ws.add_subscribers(3)
    app = AppContext(str(ws.config), clock=clock_from(moment))
    try:
        result = CliRunner().invoke(send, ["--yes"], obj=app)
    finally:
        app.close()
    assert result.exit_code == 0, result.output
    assert "This run: 3 sent" in result.output
    return stored_weeks(ws.config)


def run_demo(root: Path, moment: dt.datetime) -> list[tuple[dt.date, str]]:
    app = AppContext(None, clock=clock_from(moment))
    result = CliRunner().invoke(demo, [str(root / "demo"), "--subscribers", "3"], obj=app)
    assert result.exit_code == 0, result.output
    assert "This run: 3 sent" in result.output
    return stored_weeks(root / "demo" / "weekly_mailer.toml")


@pytest.mark.parametrize(("moment", "week"), MOMENTS, ids=["summer", "spring-dst", "autumn-dst"])
def test_job_send_and_demo_store_the_same_send_week(
    tmp_path: Path, moment: dt.datetime, week: dt.date
) -> None:
    by_job = run_job(tmp_path / "job", moment)
    by_send = run_send(tmp_path / "send", moment)
    by_demo = run_demo(tmp_path / "demo-root", moment)
    assert by_job == [(week, "sending")]  # the worker of `run` would deliver it
    assert by_send == [(week, "sent")]
    assert by_demo == [(week, "sent")]


def test_send_before_the_send_time_is_that_same_weeks_issue(tmp_path: Path) -> None:
    """Wednesday morning belongs to that Wednesday's week for `send` (a manual early send)."""
    morning = dt.datetime(2026, 11, 4, 17, 0, tzinfo=UTC)  # 09:00 PST
    assert run_send(tmp_path / "send", morning) == [(dt.date(2026, 11, 4), "sent")]
