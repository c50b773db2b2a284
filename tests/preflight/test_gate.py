"""preflight = "refuse": a broken DKIM record (served by a real nsd) holds the week in the
daemon's weekly job, `issues list` (a subprocess) shows the hold, `issues release` lets it go,
and the next run sends the week."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import run_cli
from tests.preflight.world import world_settings, write_keys, zones
from tests.scheduler.test_job import WED, Clock, issues, seed_earlier_week
from tests.support.nsd import nsd_server
from tests.support.smtpd import SMTPServer
from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.scheduler.job import WeeklyJob
from weekly_mailer.store.db import Database
from weekly_mailer.store.hold_models import WeekHold

ARTICLE = "---\ntitle: Frost on the pond\ndate: 2026-11-24\n---\nThe pond froze early.\n"


@pytest.mark.slow
def test_refuse_holds_the_week_until_released(
    database: Database, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = write_keys(tmp_path / "keys")
    (tmp_path / "article.md").write_text(ARTICLE)
    with database.sessions.begin() as session:
        subs.add(session, "ada@example.org", confirmed=True, source="cli")
    seed_earlier_week(database)
    with nsd_server(tmp_path / "nsd", zones(keys)) as resolver, SMTPServer() as relay:
        s = world_settings(settings, "dkim-missing", keys, resolver).replace(
            backend_url=relay.url, preflight="refuse", article_source=str(tmp_path / "article.md")
        )
        clock = Clock(WED + dt.timedelta(minutes=1))
        job = WeeklyJob(s, database.sessions, clock=clock)
        with caplog.at_level(logging.WARNING, logger="weekly_mailer"):
            job.reconcile()
        assert issues(database)[-1].send_week == dt.date(2026, 11, 18)  # nothing made
        with database.sessions() as session:
            holds = list(session.scalars(select(WeekHold)))
        assert [(h.send_week, h.issue_id, h.released_at) for h in holds] == [
            (dt.date(2026, 11, 25), None, None)
        ]
        assert holds[0].reason.startswith("pre-flight: DKIM (RSA): no key record at "
                                          "wm1._domainkey.dkim-missing.test")  # fmt: skip
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert "week of 2026-11-25 HELD, not sent: the weekly send is held from the week of " \
            "2026-11-25 on by the pre-flight: pre-flight: DKIM (RSA)" in logged

        env = {"WEEKLY_MAILER_DATABASE_URL": s.database_url, "WEEKLY_MAILER_SECRET_KEY": "k" * 32}
        listed = run_cli("issues", "list", cwd=tmp_path, env=env)
        assert listed.returncode == 0, listed.stderr
        assert "HELD: the weekly send is held from the week of 2026-11-25 on: pre-flight: " \
            "DKIM (RSA): no key record" in " ".join(listed.stdout.split())

        clock.now += dt.timedelta(minutes=1)
        job.reconcile()  # still held: nothing sent
        assert relay.received() == []

        released = run_cli("issues", "release", "2026-11-25", "--by", "editor", cwd=tmp_path,
                           env=env)  # fmt: skip
        assert released.returncode == 0, released.stderr
        assert "Released the hold from the week of 2026-11-25 (pre-flight: " in released.stdout

        clock.now += dt.timedelta(minutes=1)
        job = WeeklyJob(s, database.sessions, clock=clock)  # a restarted daemon: asks again
        job.reconcile()
        sent = issues(database)[-1]
        assert (sent.send_week, sent.status, sent.title) == (
            dt.date(2026, 11, 25), "sending", "Frost on the pond"
        )
