"""The weekly job against a real database, with an injected clock (no sleeping)."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from pathlib import Path

import pytest
from sqlalchemy import select

from weekly_mailer.config import Settings
from weekly_mailer.issues import file_key
from weekly_mailer.issues.ledger import record_week
from weekly_mailer.scheduler.catchup import StartAction
from weekly_mailer.scheduler.job import WeeklyJob
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Issue, IssueStatus

LA = zoneinfo.ZoneInfo("America/Los_Angeles")
WED = dt.datetime(2026, 11, 25, 18, tzinfo=LA)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def make_job(database: Database, settings: Settings, clock: Clock) -> WeeklyJob:
    return WeeklyJob(settings, database.sessions, clock=clock)


def issues(database: Database) -> list[Issue]:
    with database.sessions.begin() as session:
        return list(session.scalars(select(Issue).order_by(Issue.send_week)))


def seed_earlier_week(database: Database, week: dt.date = dt.date(2026, 11, 18)) -> None:
    """An installation that has run before (so a missed week is recorded, not ignored)."""
    with database.sessions.begin() as session:
        record_week(
            session,
            week,
            status=IssueStatus.SKIPPED,
            reason="earlier",
            now=WED - dt.timedelta(days=7),
        )


def test_down_past_the_grace_window_records_the_week_missed_loudly(
    database: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    seed_earlier_week(database)
    clock = Clock(WED + dt.timedelta(hours=13))  # back on Thursday morning, 13 h late
    job = make_job(database, settings, clock)
    with caplog.at_level(logging.INFO, logger="weekly_mailer"):
        assert job.reconcile() is StartAction.MISSED
    missed = issues(database)[-1]
    assert (missed.send_week, missed.status) == (dt.date(2026, 11, 25), "missed")
    assert "past the grace window of 12h00m" in missed.reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("week of 2026-11-25 MISSED, nothing sent" in r.getMessage() for r in warnings)
    # Coming back again changes nothing, and never sends it late.
    clock.now += dt.timedelta(hours=5)
    assert job.reconcile() is StartAction.NOTHING
    assert [i.status for i in issues(database)] == ["skipped", "missed"]


def test_within_the_grace_window_without_an_article_the_week_is_skipped(
    database: Database, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "2026-11-18-last-week.md").write_text("---\ntitle: Old\n---\nOld news.\n")
    settings = settings.replace(article_source=str(folder))
    seed_earlier_week(database)  # an installation that ran before, down at the send time
    clock = Clock(WED + dt.timedelta(hours=2))
    job = make_job(database, settings, clock)
    with caplog.at_level(logging.WARNING, logger="weekly_mailer"):
        assert job.reconcile() is StartAction.CATCH_UP
    skipped = issues(database)[-1]
    assert (skipped.send_week, skipped.status) == (dt.date(2026, 11, 25), "skipped")
    assert "no file for 2026-11-25" in skipped.reason
    assert "week of 2026-11-25 skipped, nothing sent: no file for 2026-11-25" in caplog.text


def test_no_article_source_skips_the_week(database: Database, settings: Settings) -> None:
    job = make_job(database, settings, Clock(WED))
    assert job.reconcile() is StartAction.CATCH_UP
    (skipped,) = issues(database)
    assert (skipped.status, skipped.reason) == ("skipped", "article_source is not set")


def test_an_unreadable_source_leaves_the_week_open_until_the_window_closes(
    database: Database, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed_earlier_week(database)
    settings = settings.replace(article_source=str(tmp_path / "feed.xml"))  # does not exist
    clock = Clock(WED + dt.timedelta(minutes=1))
    job = make_job(database, settings, clock)
    with caplog.at_level(logging.ERROR, logger="weekly_mailer"):
        job.reconcile()
        job.reconcile()  # a minute later: still open, logged loudly once
    assert [i.send_week for i in issues(database)] == [dt.date(2026, 11, 18)]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "week of 2026-11-25: cannot read the article" in errors[0].getMessage()
    clock.now = WED + dt.timedelta(hours=12, minutes=1)
    assert job.reconcile() is StartAction.MISSED
    assert issues(database)[-1].status == "missed"


def test_a_fresh_installation_past_the_window_records_nothing(
    database: Database, settings: Settings
) -> None:
    job = make_job(database, settings, Clock(WED + dt.timedelta(days=2)))
    assert job.reconcile() is StartAction.NOTHING
    assert issues(database) == []


def test_a_recorded_week_is_left_alone(database: Database, settings: Settings) -> None:
    with database.sessions.begin() as session:
        record_week(session, dt.date(2026, 11, 25), status=IssueStatus.SKIPPED, reason="x", now=WED)
    job = make_job(database, settings, Clock(WED + dt.timedelta(minutes=3)))
    assert job.reconcile() is StartAction.NOTHING
    assert len(issues(database)) == 1


def test_a_standby_does_nothing(database: Database, settings: Settings) -> None:
    class Standby:
        def acquire(self) -> bool:
            return False

        def release(self) -> None:
            pass

    job = WeeklyJob(
        settings,
        database.sessions,
        clock=Clock(WED),
        leadership=Standby(),
    )
    assert job.reconcile() is None
    assert issues(database) == []


def folder_with_article(tmp_path: Path) -> Path:
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "2026-11-25-hedges.md").write_text(
        "---\ntitle: Hedges in winter\nauthor: Robin Field\ndate: 2026-11-24\n---\n"
        "A hedge is a slow city: wrens, dunnocks and a hundred insects share it.\n"
    )
    return folder


def add_readers(database: Database, *emails: str) -> None:
    from weekly_mailer import subscribers as subs

    with database.sessions.begin() as session:
        for email in emails:
            subs.add(session, email, confirmed=True, source="test")


def test_the_scheduled_send_composes_stores_and_enqueues_once(
    database: Database, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from weekly_mailer.store.models import Delivery

    settings = settings.replace(article_source=str(folder_with_article(tmp_path)))
    add_readers(database, "ada@example.org", "bo@example.net")
    woken: list[bool] = []
    clock = Clock(WED - dt.timedelta(hours=1))  # a fresh installation, started before the send
    job = WeeklyJob(
        settings,
        database.sessions,
        clock=clock,
        on_enqueued=lambda: woken.append(True),
    )
    clock.now = WED + dt.timedelta(seconds=1)
    with caplog.at_level(logging.INFO, logger="weekly_mailer"):
        assert job.reconcile() is StartAction.CATCH_UP
    (issue,) = issues(database)
    assert (issue.send_week, issue.status, issue.title) == (
        dt.date(2026, 11, 25),
        "sending",
        "Hedges in winter",
    )
    assert issue.source_key == file_key(tmp_path / "articles" / "2026-11-25-hedges.md")
    with database.sessions.begin() as session:
        queued = session.scalars(select(Delivery.status).where(Delivery.issue_id == issue.id))
        assert sorted(queued) == ["queued", "queued"]
    assert woken == [True]
    assert (
        "week of 2026-11-25: issue #1 'Hedges in winter' from "
        f"{tmp_path / 'articles' / '2026-11-25-hedges.md'} enqueued for 2 subscribers at "
        "2026-11-26 02:00:01 UTC"
    ) in [r.getMessage() for r in caplog.records]

    # A minute later (the reconcile job), and after a restart: nothing new.
    clock.now += dt.timedelta(minutes=1)
    assert job.reconcile() is StartAction.NOTHING
    again = WeeklyJob(settings, database.sessions, clock=clock)
    assert again.reconcile() is StartAction.NOTHING
    assert len(issues(database)) == 1


def test_losing_the_claim_race_sends_nothing(
    database: Database, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two daemons both saw the week open; the second insert hits the unique send week."""
    settings = settings.replace(article_source=str(folder_with_article(tmp_path)))
    add_readers(database, "ada@example.org")
    clock = Clock(WED)
    first = WeeklyJob(settings, database.sessions, clock=clock)
    second = WeeklyJob(settings, database.sessions, clock=clock)
    assert first.reconcile() is StartAction.CATCH_UP
    with caplog.at_level(logging.INFO, logger="weekly_mailer"):
        second._send_week(WED, now=clock())
    assert "week of 2026-11-25: another daemon claimed it first; nothing to do" in caplog.text
    assert len(issues(database)) == 1


def test_a_fresh_installation_started_just_after_a_send_time_waits_for_the_next(
    database: Database, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.replace(article_source=str(folder_with_article(tmp_path)))
    add_readers(database, "ada@example.org")
    clock = Clock(WED + dt.timedelta(minutes=10))  # first start, 10 minutes after the send time
    job = WeeklyJob(settings, database.sessions, clock=clock)
    with caplog.at_level(logging.INFO, logger="weekly_mailer"):
        assert job.reconcile() is StartAction.NOTHING
        clock.now += dt.timedelta(minutes=1)  # the reconcile job a minute later
        assert job.reconcile() is StartAction.NOTHING
    assert issues(database) == []
    said = [r for r in caplog.records if "before the daemon first ran" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO]  # once, at INFO
    assert "week of 2026-11-25: nothing to do (first start" in said[0].getMessage()
    # The next send time sends the first issue.
    (tmp_path / "articles" / "2026-12-02-ponds.md").write_text(
        "---\ntitle: Ponds\n---\nA pond is a small sea.\n"
    )
    clock.now = WED + dt.timedelta(days=7, seconds=1)
    assert job.reconcile() is StartAction.CATCH_UP
    (issue,) = issues(database)
    assert (issue.send_week, issue.title, issue.status) == (
        dt.date(2026, 12, 2),
        "Ponds",
        "sending",
    )


def test_weeks_of_downtime_are_each_recorded_missed(
    database: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    seed_earlier_week(database, dt.date(2026, 11, 11))  # the last week the daemon saw
    clock = Clock(WED + dt.timedelta(weeks=3, hours=13))  # back 13 h after the 12-16 send
    job = make_job(database, settings, clock)
    with caplog.at_level(logging.WARNING, logger="weekly_mailer"):
        assert job.reconcile() is StartAction.MISSED
    weeks = [(i.send_week, i.status) for i in issues(database)]
    assert weeks == [
        (dt.date(2026, 11, 11), "skipped"),
        (dt.date(2026, 11, 18), "missed"),
        (dt.date(2026, 11, 25), "missed"),
        (dt.date(2026, 12, 2), "missed"),
        (dt.date(2026, 12, 9), "missed"),
        (dt.date(2026, 12, 16), "missed"),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for week in ("2026-11-18", "2026-11-25", "2026-12-02", "2026-12-09", "2026-12-16"):
        assert sum(m.startswith(f"week of {week} MISSED, nothing sent") for m in warnings) == 1
    assert "the daemon was not running" in issues(database)[1].reason
    # A restart changes nothing.
    assert job.reconcile() is StartAction.NOTHING
    assert len(issues(database)) == 6


def test_downtime_is_recorded_at_most_eight_weeks_back(
    database: Database, settings: Settings
) -> None:
    seed_earlier_week(database)
    clock = Clock(WED + dt.timedelta(weeks=20, hours=1))  # within the grace window of 04-14
    job = make_job(database, settings.replace(article_source=""), clock)
    assert job.reconcile() is StartAction.CATCH_UP  # this week: skipped (no article_source)
    rows = issues(database)
    missed = [i.send_week for i in rows if i.status == "missed"]
    assert len(missed) == 8
    assert missed[0] == dt.date(2026, 11, 25) + dt.timedelta(weeks=12)
    assert rows[-1].status == "skipped"
