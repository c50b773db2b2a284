"""The list-health guard is part of ``issues.look_at_week`` / ``plan_week``, the one path that
makes a week's issue: ``send``, ``demo`` and the daemon's weekly job all refuse a held week
(``send`` and ``demo`` with one line and exit status 3), and nothing is made for it."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.conftest import run_cli
from weekly_mailer.clock import utcnow
from weekly_mailer.config import load_settings
from weekly_mailer.scheduler.catchup import StartAction
from weekly_mailer.scheduler.job import WeeklyJob
from weekly_mailer.scheduler.timing import WeeklySchedule
from weekly_mailer.store.db import Database
from weekly_mailer.store.hold_models import WeekHold
from weekly_mailer.store.models import Issue

REASON = "issue #1 (week of a test): complaint rate 5.00% (1 complaints of 20 delivered)"


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.slow
def test_send_demo_and_the_weekly_job_all_refuse_a_held_week(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = workdir / "demo"
    made = run_cli("demo", str(folder), "--subscribers", "3", cwd=workdir)
    assert made.returncode == 0, made.stderr
    config = folder / "weekly_mailer.toml"
    settings = load_settings(config, environ={})
    now = utcnow()
    schedule = WeeklySchedule.from_settings(settings)
    fire = schedule.previous(now)
    job_week = schedule.send_week(fire)
    with Database(settings) as db:
        with db.sessions.begin() as session:
            # The demo's issue becomes an earlier week's, and its rates hold the send.
            issue_id = session.scalars(select(Issue.id)).one()
            earlier = min(job_week, session.get(Issue, issue_id).send_week)  # type: ignore[union-attr]
            earlier -= dt.timedelta(days=7)
            session.execute(update(Issue).values(send_week=earlier))
            session.add(
                WeekHold(
                    send_week=earlier + dt.timedelta(days=7), issue_id=issue_id, reason=REASON
                )
            )
        files = sorted((folder / "outbox").glob("*.eml"))
        assert len(files) == 3

        refused = (
            f"Error: the weekly send is held from the week of {earlier + dt.timedelta(days=7)} "
            f"on by the list-health guard: {REASON}; nothing was sent"
        )
        again = run_cli("demo", str(folder), cwd=workdir)
        assert again.returncode == 3, again.stderr
        assert _one_line(again.stderr).startswith(refused)

        sent = run_cli(
            "--config", str(config), "send", str(folder / "article.md"), "--yes", cwd=workdir
        )
        assert sent.returncode == 3, sent.stderr
        assert _one_line(sent.stderr).startswith(refused)
        assert "issues release" in sent.stderr

        clock_now = fire + dt.timedelta(seconds=5)
        job = WeeklyJob(
            settings.replace(article_source=str(folder / "article.md")),
            db.sessions,
            clock=lambda: clock_now,
            started_at=fire - dt.timedelta(hours=1),
        )
        with caplog.at_level(logging.WARNING, logger="weekly_mailer"):
            assert job.reconcile() is StartAction.NOTHING
        assert any(
            f"week of {job_week} HELD, not sent: the weekly send is held" in r.getMessage()
            for r in caplog.records
        )
        with db.sessions.begin() as session:
            assert list(session.scalars(select(Issue.send_week))) == [earlier]  # nothing made
    assert sorted((folder / "outbox").glob("*.eml")) == files  # nothing sent
