"""`send` and the daemon choose and record a week's article the same way (one source key)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from tests.support.send import ARTICLE, Workspace
from weekly_mailer.cli import main
from weekly_mailer.clock import utcnow
from weekly_mailer.issues.weeks import scheduled_send_at, send_week_for
from weekly_mailer.scheduler.catchup import StartAction
from weekly_mailer.scheduler.job import WeeklyJob
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Issue


def invoke(ws: Workspace, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(ws.config), *args])


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def issue_rows(ws: Workspace) -> list[tuple[dt.date, str, str]]:
    with Database(ws.settings) as db, db.sessions.begin() as session:
        rows = session.scalars(select(Issue).order_by(Issue.send_week)).all()
        return [(i.send_week, i.status, i.reason) for i in rows]


def next_weeks_job(ws: Workspace, db: Database) -> tuple[WeeklyJob, dt.date]:
    """The daemon's job one second after next week's send time (it ran all week)."""
    week = send_week_for(utcnow(), ws.settings) + dt.timedelta(days=7)
    fire = scheduled_send_at(week, ws.settings)
    clock = Clock(fire - dt.timedelta(days=1))
    job = WeeklyJob(ws.settings, db.sessions, clock=clock)
    clock.now = fire + dt.timedelta(seconds=1)
    return job, week


def test_a_file_sent_by_hand_is_not_sent_again_by_the_daemon_next_week(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = Workspace(workdir, backend_url=f"file://{workdir / 'outbox'}")
    ws.add_subscribers(3)
    sent = invoke(ws, "send", str(ws.root / "article.md"), "--yes")
    assert sent.exit_code == 0, sent.output
    assert "This run: 3 sent" in sent.output
    # Next week the daemon runs with the same (unchanged) file as article_source.
    with Database(ws.settings) as db:
        job, week = next_weeks_job(ws, db)
        with caplog.at_level(logging.WARNING, logger="weekly_mailer"):
            assert job.reconcile() is StartAction.CATCH_UP
    assert issue_rows(ws)[-1] == (week, "skipped", "article.md was already sent (no new content)")
    assert f"week of {week} skipped, nothing sent: article.md was already sent" in caplog.text
    assert len(list((ws.root / "outbox").glob("*.eml"))) == 3  # nobody got it twice


def test_an_edited_file_is_new_for_the_daemon(workdir: Path) -> None:
    ws = Workspace(workdir, backend_url=f"file://{workdir / 'outbox'}")
    ws.add_subscribers(2)
    sent = invoke(ws, "send", "--yes")
    assert sent.exit_code == 0, sent.output
    (ws.root / "article.md").write_text(ARTICLE.replace("allotment", "orchard"))
    with Database(ws.settings) as db:
        job, week = next_weeks_job(ws, db)
        assert job.reconcile() is StartAction.CATCH_UP
    assert issue_rows(ws)[-1][:2] == (week, "sending"), issue_rows(ws)


def folder_workspace(workdir: Path, name: str = "{week}-hedges.md") -> tuple[Workspace, Path]:
    folder = workdir / "articles"
    folder.mkdir()
    ws = Workspace(workdir, backend_url=f"file://{workdir / 'outbox'}", article_source=str(folder))
    week = send_week_for(utcnow(), ws.settings)
    article = folder / name.format(week=week)
    article.write_text(ARTICLE.replace("Notes from the allotment", "Hedges in winter"))
    return ws, article


def test_send_with_a_folder_source_picks_the_weeks_file_like_the_daemon(workdir: Path) -> None:
    ws, dated = folder_workspace(workdir)
    ws.add_subscribers(2)
    dry = invoke(ws, "send", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "is a folder" not in dry.output
    assert "'Hedges in winter'" in dry.output and "would go to 2 subscribers" in dry.output
    sent = invoke(ws, "send", "--yes")
    assert sent.exit_code == 0, sent.output
    assert "This run: 2 sent" in sent.output
    with Database(ws.settings) as db, db.sessions.begin() as session:
        issue = session.scalars(select(Issue)).one()
        assert (issue.title, issue.source) == ("Hedges in winter", str(dated))


def test_an_undated_folder_file_sent_by_hand_is_not_sent_again_next_week(workdir: Path) -> None:
    ws, undated = folder_workspace(workdir, "hedges.md")
    ws.add_subscribers(2)
    sent = invoke(ws, "send", "--yes")  # no SOURCE: the folder's undated file, as the daemon
    assert sent.exit_code == 0, sent.output
    assert "This run: 2 sent" in sent.output
    with Database(ws.settings) as db:
        job, week = next_weeks_job(ws, db)
        assert job.reconcile() is StartAction.CATCH_UP
    last = issue_rows(ws)[-1]
    assert last[:2] == (week, "skipped")
    assert "no undated file left to send" in last[2]
    assert len(list((ws.root / "outbox").glob("*.eml"))) == 2


def test_send_with_a_folder_source_and_nothing_for_the_week(workdir: Path) -> None:
    ws, dated = folder_workspace(workdir)
    ws.add_subscribers(1)
    dated.rename(dated.with_name("2001-01-03-old.md"))
    result = invoke(ws, "send", "--dry-run")
    assert result.exit_code == 1, result.output
    week = send_week_for(utcnow(), ws.settings)
    assert result.output.startswith(f"Error: no file for {week} in {dated.parent}"), result.output
    assert issue_rows(ws) == []


def test_the_demos_article_is_not_sent_again_by_run_next_week(tmp_path: Path) -> None:
    from weekly_mailer.cli.demo import DEMO_CONFIG
    from weekly_mailer.config import load_settings

    folder = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", str(folder), "--subscribers", "3"])
    assert result.exit_code == 0, result.output
    settings = load_settings(folder / DEMO_CONFIG, environ={}).replace(
        article_source=str(folder / "article.md")
    )
    week = send_week_for(utcnow(), settings) + dt.timedelta(days=7)
    fire = scheduled_send_at(week, settings)
    clock = Clock(fire + dt.timedelta(seconds=1))
    with Database(settings) as db:
        job = WeeklyJob(settings, db.sessions, clock=clock)
        assert job.reconcile() is StartAction.CATCH_UP
        with db.sessions.begin() as session:
            rows = session.scalars(select(Issue).order_by(Issue.send_week)).all()
            last = (rows[-1].send_week, rows[-1].status, rows[-1].reason)
    assert last == (week, "skipped", "article.md was already sent (no new content)")
    assert len(list((folder / "outbox").glob("*.eml"))) == 3
