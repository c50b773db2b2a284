"""The real daemon (`weekly-mailer run`) as a subprocess, a feed file and a real SMTP server.

Checks: the issue arrives once per subscriber; a killed and restarted daemon sends nothing
again; two daemons started together on one database make one issue (SQLite, and PostgreSQL with
the advisory-lock leader).

The schedule is set some seconds ahead with the seconds form ('tue 14:51:07'), so the weekly
job fires from APScheduler's cron trigger while the test watches. The test that checks that the
cron trigger (not the start-up catch-up) sent the issue gives the daemon ``CRON_LEAD_SECONDS``
to start on a loaded machine; the others record last week first (an installation that ran
before), so a daemon that starts after the send time catches the week up and their checks
still hold. Daemons listen on port 0 (no free-port race).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterator
from email.utils import format_datetime
from pathlib import Path

import pytest
import tomli_w
from sqlalchemy import select

from tests.support.smtpd import SMTPServer
from weekly_mailer import subscribers as subs
from weekly_mailer.config import DAYS, Settings, load_settings
from weekly_mailer.issues.ledger import record_week
from weekly_mailer.store.db import Database, make_engine, upgrade
from weekly_mailer.store.models import Delivery, Issue, IssueStatus

pytestmark = pytest.mark.slow

LA = zoneinfo.ZoneInfo("America/Los_Angeles")
READERS = ["ada@example.org", "bo@example.net", "cy@example.com"]
# The schedule fires this long after the daemons are started. Where it is used the week before
# is recorded, so a daemon that is up only after the send time catches the week up: the same
# checks hold either way, and a longer lead only made each test wait.
LEAD_SECONDS = 5
CRON_LEAD_SECONDS = 30  # room for a slow start where the order "started, then sent" is checked


def feed_xml(published: dt.datetime) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
<title>Field notes</title><link>https://blog.example.org/</link><description>d</description>
<item>
  <title>Hedges in winter</title>
  <link>https://blog.example.org/2026/hedges-in-winter</link>
  <guid>https://blog.example.org/2026/hedges-in-winter</guid>
  <pubDate>{format_datetime(published)}</pubDate>
  <author>robin@example.org (Robin Field)</author>
  <description>&lt;p&gt;A hedge is a slow city. Wrens, dunnocks and a hundred insects
  share it through the cold months.&lt;/p&gt;&lt;p&gt;Cut it late, and only every other
  year.&lt;/p&gt;</description>
</item>
<item>
  <title>An older post</title>
  <link>https://blog.example.org/2025/older</link>
  <pubDate>{format_datetime(published - dt.timedelta(days=30))}</pubDate>
  <description>&lt;p&gt;Old news.&lt;/p&gt;</description>
</item>
</channel></rss>
"""


def schedule_in(seconds: float) -> tuple[str, dt.datetime]:
    """A 'ddd HH:MM:SS' schedule for ``seconds`` from now, in Los Angeles time."""
    at = (dt.datetime.now(LA) + dt.timedelta(seconds=seconds)).replace(microsecond=0)
    return f"{DAYS[at.weekday()]} {at:%H:%M:%S}", at


class DaemonWorkspace:
    def __init__(self, root: Path, *, smtp_url: str, database_url: str | None = None) -> None:
        self.root = root
        feed = root / "feed.xml"
        feed.write_text(feed_xml(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
        self.values = {
            "database_url": database_url or f"sqlite:///{root / 'mail.db'}",
            "backend_url": smtp_url,
            "secret_key": "daemon-e2e-secret",
            "from_address": "Field Notes <news@example.org>",
            "base_url": "https://news.example.org",
            "postal_address": "1 Example Street, Springfield",
            "article_source": str(feed),
            "retry_initial_seconds": 1.0,
            "log_level": "INFO",
        }
        self.config = root / "weekly_mailer.toml"
        self.write_config()
        settings = self.settings()
        engine = make_engine(settings.database_url)
        upgrade(engine)
        engine.dispose()
        data = "email,name\n" + "".join(f"{e},Reader {i}\n" for i, e in enumerate(READERS))
        with Database(settings) as db, db.sessions.begin() as session:
            report = subs.import_file(session, data.encode(), filename="r.csv", confirmed=True)
            assert not report.errors
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def write_config(self, **changes: object) -> None:
        self.values.update(changes)
        self.config.write_text(tomli_w.dumps(self.values))

    def settings(self) -> Settings:
        return load_settings(self.config, environ={})

    def ran_last_week(self, fire: dt.datetime) -> None:
        """Record the week before ``fire`` (so a late start catches up: not a fresh install)."""
        with Database(self.settings()) as db, db.sessions.begin() as session:
            record_week(
                session,
                fire.date() - dt.timedelta(days=7),
                status=IssueStatus.SKIPPED,
                reason="last week",
                now=dt.datetime.now(dt.UTC) - dt.timedelta(days=7),
            )

    def add_readers(self, emails: list[str]) -> None:
        data = "email,name\n" + "".join(f"{e},Reader\n" for e in emails)
        with Database(self.settings()) as db, db.sessions.begin() as session:
            report = subs.import_file(session, data.encode(), filename="more.csv", confirmed=True)
            assert not report.errors

    def states(self) -> Counter[str]:
        with Database(self.settings()) as db, db.sessions.begin() as session:
            return Counter(session.scalars(select(Delivery.status)).all())

    def start(
        self, name: str, *, port: int = 0, extra: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        log = self.root / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEEKLY_MAILER_")}
        env["WEEKLY_MAILER_CONFIG"] = str(self.config)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "weekly_mailer", "run"),
                    *("--port", str(port), *extra),  # 0: any free port, no race
                ],
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append((proc, log))
        return proc

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def issues(self) -> list[tuple[dt.date, str, int]]:
        """Every issue but the recorded (skipped) ones: (week, status, messages sent)."""
        with Database(self.settings()) as db, db.sessions.begin() as session:
            rows = session.scalars(
                select(Issue).where(Issue.status != "skipped").order_by(Issue.send_week)
            ).all()
            out = []
            for issue in rows:
                sent = session.scalars(
                    select(Delivery.id).where(
                        Delivery.issue_id == issue.id, Delivery.status == "sent"
                    )
                ).all()
                out.append((issue.send_week, issue.status, len(sent)))
            return out

    def stop_all(self) -> None:
        for proc, _log in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server


def wait_for(what: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out: {message}")


def per_recipient(server: SMTPServer) -> Counter[str]:
    return Counter(r.lower() for m in server.received() for r in m.rcpt_tos)


def terminate(proc: subprocess.Popen[bytes], how: signal.Signals = signal.SIGTERM) -> int:
    proc.send_signal(how)
    return proc.wait(30)


def test_weekly_send_once_then_restart_sends_nothing(tmp_path: Path, smtp: SMTPServer) -> None:
    ws = DaemonWorkspace(tmp_path, smtp_url=smtp.url)
    schedule, fire = schedule_in(CRON_LEAD_SECONDS)
    ws.write_config(schedule=schedule)
    try:
        first = ws.start("first")
        wait_for(lambda: "daemon started" in ws.log("first"), 30, "the daemon starting")
        # The same process serves the web app.
        url = re.search(r"web app at (http://\S+)", ws.log("first"))
        assert url is not None, ws.log("first")
        with urllib.request.urlopen(f"{url.group(1)}/healthz", timeout=10) as answer:
            assert answer.status == 200
        wait_for(lambda: len(smtp.received()) >= 3, 60, "the issue reaching 3 subscribers")
        assert dt.datetime.now(LA) >= fire  # sent by the schedule, not before it
        wait_for(lambda: ws.issues()[-1][1:] == ("sent", 3), 20, "the issue marked sent")
        assert per_recipient(smtp) == Counter(READERS)
        message = smtp.received()[0].message
        assert message["Subject"] and "Hedges in winter" in message["Subject"]
        week = fire.date()
        assert ws.issues() == [(week, "sent", 3)]

        # Killed without warning, then restarted: the week has its issue, nothing goes again.
        first.kill()
        first.wait(10)
        second = ws.start("second")
        wait_for(lambda: "daemon started" in ws.log("second"), 30, "the restart")
        time.sleep(2)
        assert terminate(second, signal.SIGINT) == 0  # Ctrl-C stops as cleanly as SIGTERM
        assert per_recipient(smtp) == Counter(READERS)
        assert ws.issues() == [(week, "sent", 3)]

        first_log, second_log = ws.log("first"), ws.log("second")
        assert f"week of {week}: issue #1 'Hedges in winter'" in first_log
        assert "enqueued for 3 subscribers" in first_log
        assert "delivery of issue #1 finished: 3 sent, 0 failed, 0 skipped" in first_log
        # Sent by the cron trigger after start-up, not by the start-up catch-up.
        assert first_log.index("daemon started") < first_log.index("enqueued for 3")
        assert "catching up" not in first_log
        assert "stopped cleanly" in second_log
        assert "Traceback" not in first_log + second_log
    finally:
        ws.stop_all()


def two_daemons_one_issue(ws: DaemonWorkspace, smtp: SMTPServer) -> None:
    schedule, fire = schedule_in(LEAD_SECONDS)
    ws.write_config(schedule=schedule)
    ws.ran_last_week(fire)
    try:
        a, b = ws.start("a"), ws.start("b")
        wait_for(lambda: len(smtp.received()) >= 3, 60, "the issue reaching 3 subscribers")
        wait_for(lambda: ws.issues()[-1][1:] == ("sent", 3), 20, "the issue marked sent")
        time.sleep(3)  # room for a duplicate to show up, if there were one
        assert per_recipient(smtp) == Counter(READERS)
        assert ws.issues() == [(fire.date(), "sent", 3)]
        assert terminate(a) == 0
        assert terminate(b) == 0
        logs = ws.log("a") + ws.log("b")
        assert logs.count("enqueued for 3 subscribers") == 1
        assert "Traceback" not in logs
    finally:
        ws.stop_all()


def test_two_daemons_on_one_sqlite_database_make_one_issue(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    two_daemons_one_issue(DaemonWorkspace(tmp_path, smtp_url=smtp.url), smtp)


@pytest.mark.postgres
def test_two_daemons_on_postgresql_make_one_issue(
    tmp_path: Path, smtp: SMTPServer, pg_url: str
) -> None:
    ws = DaemonWorkspace(tmp_path, smtp_url=smtp.url, database_url=pg_url)
    two_daemons_one_issue(ws, smtp)
    logs = ws.log("a") + ws.log("b")
    assert logs.count("this daemon leads") == 1
    assert logs.count("another daemon leads; standing by") == 1


def test_sigterm_mid_send_finishes_in_flight_and_a_restart_completes(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    ws = DaemonWorkspace(tmp_path, smtp_url=smtp.url)
    more = [f"reader{i:02d}@example.org" for i in range(21)]
    ws.add_readers(more)
    everyone = Counter(READERS + more)
    schedule, fire = schedule_in(LEAD_SECONDS)
    ws.write_config(schedule=schedule, send_rate=4.0, concurrency=1)  # about 6 s of sending
    ws.ran_last_week(fire)
    try:
        first = ws.start("first")
        wait_for(lambda: len(smtp.received()) >= 4, 60, "the send under way")
        assert terminate(first) == 0
        got = per_recipient(smtp)
        assert 4 <= sum(got.values()) < 24
        states = ws.states()
        assert states["sending"] == 0  # nothing left half done
        assert states["sent"] == sum(got.values())  # the ledger agrees with the server
        assert states["queued"] == 24 - states["sent"]
        assert "stopped cleanly" in ws.log("first")

        ws.start("second")  # picks the send up where it stopped
        wait_for(lambda: ws.states()["sent"] == 24, 60, "the rest delivered")
        wait_for(lambda: ws.issues()[-1][1] == "sent", 20, "the issue marked sent")
        assert per_recipient(smtp) == everyone  # each reader once, no one twice
        assert "Traceback" not in ws.log("first") + ws.log("second")
    finally:
        ws.stop_all()


@pytest.mark.postgres
def test_postgresql_standby_takes_over_when_the_leader_dies(
    tmp_path: Path, smtp: SMTPServer, pg_url: str
) -> None:
    ws = DaemonWorkspace(tmp_path, smtp_url=smtp.url, database_url=pg_url)
    schedule, fire = schedule_in(CRON_LEAD_SECONDS)
    ws.write_config(schedule=schedule)
    fast = ("--check-interval", "1")
    try:
        leader = ws.start("leader", extra=fast)
        wait_for(lambda: "this daemon leads" in ws.log("leader"), 30, "the first leader")
        standby = ws.start("standby", extra=fast)
        wait_for(lambda: "standing by" in ws.log("standby"), 30, "the standby")
        leader.kill()  # dies before the send time, holding the lock
        leader.wait(10)
        wait_for(lambda: "this daemon leads" in ws.log("standby"), 30, "the takeover")
        assert dt.datetime.now(LA) < fire, "the takeover should happen before the send time"
        wait_for(lambda: len(smtp.received()) >= 3, 60, "the issue reaching 3 subscribers")
        wait_for(lambda: ws.issues()[-1][1:] == ("sent", 3), 20, "the issue marked sent")
        assert per_recipient(smtp) == Counter(READERS)
        assert ws.issues() == [(fire.date(), "sent", 3)]
        assert terminate(standby) == 0
        assert "enqueued for 3 subscribers" in ws.log("standby")
        assert "enqueued" not in ws.log("leader")
    finally:
        ws.stop_all()
