"""The one path that makes a week's issue (look_at_week, plan_week, prepare_week), on SQLite and
PostgreSQL: what it stores, what it refuses, and the race with another process."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from weekly_mailer import issues
from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.errors import NoArticleError, SendError
from weekly_mailer.store.db import Database, make_engine, upgrade
from weekly_mailer.store.models import Delivery, Issue, IssueStatus

NOW = dt.datetime(2026, 11, 26, 2, 30, tzinfo=dt.UTC)  # Wednesday 18:30 PST
WEEK = dt.date(2026, 11, 25)
ARTICLE = "---\ntitle: Hedges in winter\n---\nA hedge is a slow city: wrens share it.\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Iterator[Database]:
    url = settings.database_url
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    (tmp_path / "article.md").write_text(ARTICLE)
    s = settings.replace(database_url=url, article_source=str(tmp_path / "article.md"))
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    with Database(s) as database:
        yield database


def add_readers(db: Database, n: int) -> None:
    with db.sessions.begin() as session:
        for i in range(n):
            subs.add(session, f"reader{i}@example.org", confirmed=True, source="test")


def plan(db: Database, *, force_week: bool = False, source: str | None = None) -> issues.WeekPlan:
    with db.sessions.begin() as session:
        look = issues.look_at_week(session, db.settings, now=NOW, force_week=force_week)
    return issues.plan_week(look, db.settings, source=source)


def rows(db: Database) -> list[tuple[int, dt.date, str, int]]:
    with db.sessions.begin() as session:
        found = session.execute(
            select(Issue.id, Issue.send_week, Issue.status, func.count(Delivery.id))
            .outerjoin(Delivery, Delivery.issue_id == Issue.id)
            .group_by(Issue.id)
            .order_by(Issue.id)
        ).all()
        return [(i, w, s, n) for i, w, s, n in found]


def test_a_week_is_stored_and_enqueued_in_one_transaction(db: Database) -> None:
    add_readers(db, 3)
    planned = plan(db)
    assert (planned.week, planned.subject, planned.todo) == (WEEK, "Hedges in winter", 3)
    with db.sessions.begin() as session:
        prepared = issues.prepare_week(session, planned, now=NOW)
        assert (prepared.queued, prepared.raced) == (3, False)
    assert rows(db) == [(1, WEEK, "sending", 3)]
    # Again: the week's issue is continued, never composed or enqueued a second time.
    again = plan(db)
    assert (again.existing is not None, again.composed, again.already_sent) == (True, None, False)
    with db.sessions.begin() as session:
        assert issues.prepare_week(session, again, now=NOW).queued is None
    assert rows(db) == [(1, WEEK, "sending", 3)]


def test_losing_the_race_continues_the_other_issue(db: Database) -> None:
    add_readers(db, 2)
    first, second = plan(db), plan(db)  # both saw the week open
    with db.sessions.begin() as session:
        issues.prepare_week(session, first, now=NOW)
    with db.sessions.begin() as session:
        lost = issues.prepare_week(session, second, now=NOW)
        assert (lost.issue.id, lost.queued, lost.raced) == (1, None, True)
    assert rows(db) == [(1, WEEK, "sending", 2)]


def test_losing_the_race_to_a_recorded_week_is_refused(db: Database) -> None:
    add_readers(db, 2)
    planned = plan(db)
    with db.sessions.begin() as session:
        issues.record_week(session, WEEK, status=IssueStatus.SKIPPED, reason="x", now=NOW)
    with pytest.raises(SendError, match="just recorded as skipped by the daemon"):
        with db.sessions.begin() as session:
            issues.prepare_week(session, planned, now=NOW)
    assert rows(db) == [(1, WEEK, "skipped", 0)]


def test_no_subscribers_is_refused_and_nothing_is_stored(db: Database) -> None:
    planned = plan(db)
    assert planned.empty
    with pytest.raises(SendError, match="^no active subscribers: nothing to send"):
        with db.sessions.begin() as session:
            issues.prepare_week(session, planned, now=NOW)
    assert rows(db) == []
    with db.sessions.begin() as session:
        assert issues.prepare_week(session, planned, now=NOW, allow_empty=True).queued == 0
    assert [r[1:] for r in rows(db)] == [(WEEK, "sending", 0)]  # a worker closes it


def test_a_recorded_week_needs_force_and_its_row_becomes_the_issue(db: Database) -> None:
    add_readers(db, 1)
    with db.sessions.begin() as session:
        issues.record_week(session, WEEK, status=IssueStatus.MISSED, reason="13h late", now=NOW)
    with pytest.raises(SendError, match=r"recorded as missed \(13h late\); .* --force-week"):
        plan(db)
    forced = plan(db, force_week=True)
    with db.sessions.begin() as session:
        issues.prepare_week(session, forced, now=NOW)
    assert rows(db) == [(1, WEEK, "sending", 1)]


def test_a_source_that_is_not_the_weeks_issue_is_refused(db: Database, tmp_path: Path) -> None:
    add_readers(db, 1)
    with db.sessions.begin() as session:
        issues.prepare_week(session, plan(db), now=NOW)
    other = tmp_path / "other.md"
    other.write_text("---\ntitle: Other\n---\nSomething else.\n")
    with pytest.raises(SendError, match=f"exists; {other} is not used: run `send` without"):
        plan(db, source=str(other))
    plan(db, source=db.settings.article_source)  # the same SOURCE continues the week


def test_no_article_source(db: Database) -> None:
    settings = db.settings.replace(article_source="")
    with db.sessions.begin() as session:
        look = issues.look_at_week(session, settings, now=NOW)
    with pytest.raises(SendError, match="no article: pass SOURCE or set article_source"):
        issues.plan_week(look, settings)
    with pytest.raises(NoArticleError, match="article_source is not set"):
        issues.plan_week(look, settings, scheduled=True)  # the daemon records a skipped week
