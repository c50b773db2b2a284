"""List health against a real SQLite file: the rates (zero recipients, exactly at the limit, just
above), what counts as a hard bounce or a complaint of an issue, attribution from a quoted
Message-ID, the guard's holds, their release, and the weekly job refusing a held week."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from weekly_mailer import issues
from weekly_mailer.bounces.intake import IngestSummary, apply_report, parse_report
from weekly_mailer.compose import make_message_id, read_message_id
from weekly_mailer.config import Settings
from weekly_mailer.scheduler.catchup import StartAction
from weekly_mailer.scheduler.job import WeeklyJob
from weekly_mailer.store.bounce_models import BounceEvent
from weekly_mailer.store.db import Database
from weekly_mailer.store.hold_models import WeekHold
from weekly_mailer.store.models import Delivery, Issue, Subscriber

LA = zoneinfo.ZoneInfo("America/Los_Angeles")
WED = dt.datetime(2026, 11, 25, 18, tzinfo=LA)  # the send time of the week of 2026-11-25
LAST_WEEK = dt.date(2026, 11, 18)
NOW = WED.astimezone(dt.UTC) - dt.timedelta(days=2)


def sent_issue(
    session: Session,
    *,
    delivered: int,
    refused: int = 0,
    week: dt.date = LAST_WEEK,
    status: str = "sent",
) -> tuple[int, list[int]]:
    """An issue whose rows are all done: ``delivered`` sent, ``refused`` failed with a 550.
    Returns its id and the delivery ids (sent ones first)."""
    issue = Issue(
        send_week=week,
        status=status,
        subject="Hedges",
        created_at=NOW - dt.timedelta(days=5),
        finished_at=NOW - dt.timedelta(days=5) if status == "sent" else None,
    )
    session.add(issue)
    session.flush()
    n = delivered + refused
    if not n:
        return issue.id, []
    first = session.scalar(select(Subscriber.id).order_by(Subscriber.id.desc())) or 0
    session.execute(
        insert(Subscriber),
        [
            {
                "email": f"r{week:%m%d}.{i}@example.org",
                "email_key": f"r{week:%m%d}.{i}@example.org",
                "status": "active",
            }
            for i in range(n)
        ],
    )
    ids = list(
        session.scalars(select(Subscriber.id).where(Subscriber.id > first).order_by(Subscriber.id))
    )
    session.execute(
        insert(Delivery),
        [
            {
                "issue_id": issue.id,
                "subscriber_id": sid,
                "status": "sent" if i < delivered else "failed",
                "last_code": None if i < delivered else 550,
                "last_error": "" if i < delivered else "550 5.1.1 no such user",
            }
            for i, sid in enumerate(ids)
        ],
    )
    deliveries = list(
        session.scalars(
            select(Delivery.id).where(Delivery.issue_id == issue.id).order_by(Delivery.id)
        )
    )
    return issue.id, deliveries


def events(session: Session, kind: str, delivery_ids: list[int], **fields: object) -> None:
    """``bounce_event`` rows for these deliveries' subscribers (``fields``: how they are tied)."""
    for did in delivery_ids:
        row = session.get(Delivery, did)
        assert row is not None
        tie = {k: (did if v == "delivery" else v) for k, v in fields.items()}
        session.add(BounceEvent(kind=kind, subscriber_id=row.subscriber_id, recipient="x@y", **tie))
    session.flush()


def test_zero_recipients_rate_zero_and_no_hold(database: Database, settings: Settings) -> None:
    with database.sessions.begin() as session:
        issue_id, _ = sent_issue(session, delivered=0)
        health = issues.issue_health(session, issue_id)
        assert (health.delivered, health.refused, health.hard_bounces, health.complaints) == (
            0,
            0,
            0,
            0,
        )
        assert (health.complaint_rate, health.bounce_rate) == (0.0, 0.0)
        assert health.passed(settings) == []
        assert issues.guard(session, settings, now=NOW) == []
        assert issues.held(session, settings, now=NOW) is None


@pytest.mark.parametrize(("delivered", "held"), [(1000, False), (999, True)])
def test_complaint_rate_exactly_at_the_limit_holds_nothing_just_above_holds(
    database: Database, settings: Settings, delivered: int, held: bool
) -> None:
    assert settings.complaint_rate_limit == 0.003  # the default: Gmail's 0.3%
    with database.sessions.begin() as session:
        issue_id, rows = sent_issue(session, delivered=delivered)
        events(session, "complaint", rows[:3], issue_id=issue_id)
        health = issues.issue_health(session, issue_id)
        assert (health.delivered, health.complaints) == (delivered, 3)
        holds = issues.guard(session, settings, now=NOW)
    if not held:
        assert health.complaint_rate == 0.003 and holds == []
        return
    (hold,) = holds
    assert hold.send_week == LAST_WEEK + dt.timedelta(days=7)  # the next weekly send
    assert (hold.issue_id, hold.delivered, hold.complaints) == (issue_id, 999, 3)
    assert hold.reason == (
        f"issue #{issue_id} (week of 2026-11-18): complaint rate 0.30% (3 complaints of 999 "
        "delivered) is above complaint_rate_limit 0.30%"
    )


@pytest.mark.parametrize(("hard", "held"), [(5, False), (6, True)])
def test_bounce_rate_exactly_at_the_limit_holds_nothing_just_above_holds(
    database: Database, settings: Settings, hard: int, held: bool
) -> None:
    """100 copies sent, 2 refused at send time: hard bounces from every path count, once each."""
    with database.sessions.begin() as session:
        issue_id, rows = sent_issue(session, delivered=98, refused=2)
        # A refusal with no class recorded counts as hard (rows[98:], no bounce_event).
        events(session, "hard", rows[:2], issue_id=issue_id)  # DSNs quoting our Message-ID
        events(session, "hard", rows[2:3], delivery_id="delivery")  # tied by the delivery only
        events(session, "hard", rows[:1], issue_id=issue_id)  # the same reader twice: once
        events(session, "hard", rows[3 : 3 + hard - 5], issue_id=issue_id)
        events(session, "soft", rows[10:20], issue_id=issue_id)  # never counted
        events(session, "block", rows[20:30], issue_id=issue_id)
        health = issues.issue_health(session, issue_id)
        assert (health.delivered, health.refused, health.hard_bounces) == (98, 2, hard)
        holds = issues.guard(session, settings, now=NOW)
    assert health.bounce_rate == hard / 100
    assert bool(holds) is held
    if held:
        assert "hard-bounce rate 6.00% (6 hard bounces of 100 sent) is above " in holds[0].reason
        assert "bounce_rate_limit 5.00%" in holds[0].reason


def test_a_refusal_whose_class_is_recorded_counts_by_that_class(
    database: Database, settings: Settings
) -> None:
    with database.sessions.begin() as session:
        issue_id, rows = sent_issue(session, delivered=0, refused=4)
        events(session, "block", rows[:3], delivery_id="delivery")  # 550 5.7.1: our problem
        health = issues.issue_health(session, issue_id)
    assert (health.refused, health.hard_bounces) == (4, 1)


def test_a_hold_names_the_next_unsent_week_once_and_release_lets_it_go(
    database: Database, settings: Settings
) -> None:
    with database.sessions.begin() as session:
        issue_id, rows = sent_issue(session, delivered=10)
        sent_issue(session, delivered=2, week=LAST_WEEK + dt.timedelta(days=7))  # sent meanwhile
        events(session, "complaint", rows[:1], issue_id=issue_id)
        (hold,) = issues.guard(session, settings, now=NOW)
        assert hold.send_week == LAST_WEEK + dt.timedelta(days=14)
        assert issues.guard(session, settings, now=NOW) == []  # placed once
        assert issues.held(session, settings, now=NOW) is hold
    with database.sessions.begin() as session:
        assert issues.release_holds(session, by="ops", now=NOW, week=dt.date(2026, 1, 7)) == []
        (released,) = issues.release_holds(session, by="ops", now=NOW)
        assert (released.released_by, released.released_at) == ("ops", NOW)
    with database.sessions.begin() as session:
        events(session, "complaint", rows[1:5], issue_id=issue_id)  # more reports come in
        assert issues.guard(session, settings, now=NOW) == []  # a released issue stays released
        assert issues.held(session, settings, now=NOW) is None
        (row,) = session.scalars(select(WeekHold)).all()
        assert row.released_by == "ops"


def test_only_finished_recent_issues_hold(database: Database, settings: Settings) -> None:
    with database.sessions.begin() as session:
        sending, rows = sent_issue(session, delivered=10, status="sending")
        events(session, "complaint", rows[:5], issue_id=sending)
        assert issues.guard(session, settings, now=NOW) == []  # its rows are not all done
        old, rows = sent_issue(session, delivered=10, week=LAST_WEEK - dt.timedelta(days=7))
        events(session, "complaint", rows[:5], issue_id=old)
        later = NOW + issues.health.LOOKBACK * 2  # finished long before: old news holds nothing
        assert issues.guard(session, settings, now=later) == []
        assert [h.issue_id for h in issues.guard(session, settings, now=NOW)] == [old]


def arf_quoting(message_id: str, recipient: str) -> bytes:
    """An ARF abuse report with the original message's headers, as a mailbox provider sends."""
    return (
        "From: feedback@isp.example.net\r\nTo: abuse@example.org\r\n"
        "Message-ID: <report.1@isp.example.net>\r\nSubject: Complaint\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="C"\r\n'
        "\r\n--C\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n"
        "--C\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: ISP-FBL/1.0\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: {recipient}\r\n"
        "\r\n--C\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@example.org\r\nTo: {recipient}\r\nSubject: This week\r\n"
        f"Message-ID:\r\n {message_id}\r\n"
        "\r\n--C--\r\n"
    ).encode()


def test_message_ids_are_read_back_only_with_the_key(settings: Settings) -> None:
    mid = make_message_id(settings, LAST_WEEK, 42)
    assert read_message_id(mid, secret_key=settings.secret_key) == ("2026-11-18", 42)
    assert read_message_id(mid, secret_key="another key") is None
    forged = mid.replace(".42.", ".43.")
    assert read_message_id(forged, secret_key=settings.secret_key) is None
    assert read_message_id("<abc@example.org>", secret_key=settings.secret_key) is None


def test_a_report_is_tied_to_the_issue_whose_message_id_it_quotes(
    database: Database, settings: Settings
) -> None:
    with database.sessions.begin() as session:
        issue_id, rows = sent_issue(session, delivered=3)
        sub = session.get(Delivery, rows[0])
        assert sub is not None
        email = session.get(Subscriber, sub.subscriber_id).email  # type: ignore[union-attr]
        real = make_message_id(settings, LAST_WEEK, sub.subscriber_id)
        tampered = real[:-20] + ("0" if real[-20] != "0" else "1") + real[-19:]
        summary = IngestSummary()
        for number, mid in enumerate((real, tampered)):
            data = arf_quoting(mid, email).replace(b"report.1", f"report.{number}".encode())
            apply_report(
                session,
                parse_report(data),
                bounce_limit=3,
                summary=summary,
                now=NOW,
                secret_key=settings.secret_key,
            )
        tied = session.execute(select(BounceEvent.message_id, BounceEvent.issue_id)).all()
    assert sorted(tied) == [
        ("<report.0@isp.example.net>", issue_id),
        ("<report.1@isp.example.net>", None),  # a tampered id ties the report to nothing
    ]
    assert summary.issue_ids == {issue_id}


def folder_with_article(tmp_path: Path) -> Path:
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "2026-11-25-hedges.md").write_text(
        "---\ntitle: Hedges in winter\ndate: 2026-11-24\n---\nA hedge is a slow city.\n"
    )
    return folder


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def test_the_weekly_job_refuses_a_held_week_then_sends_it_once_released(
    database: Database, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.replace(article_source=str(folder_with_article(tmp_path)))
    with database.sessions.begin() as session:
        issue_id, rows = sent_issue(session, delivered=20)
        events(session, "complaint", rows[:1], issue_id=issue_id)  # 5% of 20
    clock = Clock(WED + dt.timedelta(seconds=1))
    job = WeeklyJob(
        settings, database.sessions, clock=clock, started_at=WED - dt.timedelta(hours=1)
    )
    with caplog.at_level(logging.INFO, logger="weekly_mailer"):
        assert job.reconcile() is StartAction.NOTHING
        clock.now += dt.timedelta(minutes=1)
        assert job.reconcile() is StartAction.NOTHING  # the next check: still held
    with database.sessions.begin() as session:
        weeks = list(session.scalars(select(Issue.send_week)))
    assert weeks == [LAST_WEEK]  # nothing made, nothing recorded for the held week
    said = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage()[:40] for r in said] == [
        f"list health: issue #{issue_id} (week of 2026-11-18): "[:40],
        "week of 2026-11-25 HELD, not sent: the w",
    ]  # each said loudly once, then quietly
    assert "complaint rate 5.00% (1 complaints of 20 delivered)" in said[1].getMessage()
    assert "`weekly-mailer issues release 2026-11-25`" in said[1].getMessage()

    with database.sessions.begin() as session:
        issues.release_holds(session, by="ops", now=clock.now)
    clock.now += dt.timedelta(minutes=1)
    assert job.reconcile() is StartAction.CATCH_UP
    with database.sessions.begin() as session:
        made = session.scalars(select(Issue).where(Issue.send_week == WED.date())).one()
        assert (made.status, made.title) == ("sending", "Hedges in winter")


def test_a_week_held_past_the_grace_window_is_recorded_missed_with_the_hold(
    database: Database, settings: Settings
) -> None:
    with database.sessions.begin() as session:
        issue_id, rows = sent_issue(session, delivered=20)
        events(session, "complaint", rows[:1], issue_id=issue_id)
    clock = Clock(WED + dt.timedelta(seconds=1))
    job = WeeklyJob(settings, database.sessions, clock=clock)
    assert job.reconcile() is StartAction.NOTHING  # held
    clock.now = WED + dt.timedelta(hours=13)  # nobody released it within the 12 h window
    assert job.reconcile() is StartAction.MISSED
    with database.sessions.begin() as session:
        missed = session.scalars(select(Issue).where(Issue.send_week == WED.date())).one()
        assert missed.status == "missed"
        assert f"; held by the list-health guard: issue #{issue_id} " in missed.reason
        # Still held: the week after is not sent either until someone releases it.
        assert issues.held(session, settings, now=clock.now) is not None


@pytest.mark.postgres
def test_the_guard_on_postgresql(pg_url: str, settings: Settings) -> None:
    from weekly_mailer.store.db import make_engine, upgrade

    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    with Database(settings.replace(database_url=pg_url)) as db:
        with db.sessions.begin() as session:
            issue_id, rows = sent_issue(session, delivered=999, refused=1)
            events(session, "complaint", rows[:3], issue_id=issue_id)
            events(session, "hard", rows[3:4], delivery_id="delivery")
            health = issues.issue_health(session, issue_id)
            assert (health.delivered, health.refused, health.hard_bounces) == (999, 1, 2)
            (hold,) = issues.guard(session, db.settings, now=NOW)
            assert issues.guard(session, db.settings, now=NOW) == []
        with db.sessions.begin() as session:
            assert issues.held(session, db.settings, now=NOW) is not None
            assert len(issues.release_holds(session, by="ops", now=NOW)) == 1
            assert issues.held(session, db.settings, now=NOW) is None
