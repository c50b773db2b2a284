"""The daemon's parts in one process: catch-up on start, the retry job, the web app, stop."""

from __future__ import annotations

import datetime as dt
import threading
import time
import urllib.error
import urllib.request
import zoneinfo
from pathlib import Path

import pytest
from sqlalchemy import select

from weekly_mailer import subscribers as subs
from weekly_mailer.clock import utcnow as utc_clock
from weekly_mailer.config import DAYS, Settings
from weekly_mailer.delivery.backends.base import Envelope, SendResult
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.delivery.runner import Runner
from weekly_mailer.errors import TemporaryFailure
from weekly_mailer.issues.ledger import record_week
from weekly_mailer.scheduler.daemon import Daemon, WebServer
from weekly_mailer.scheduler.job import WeeklyJob
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery, Issue, IssueStatus
from weekly_mailer.web import close_app, create_app

LA = zoneinfo.ZoneInfo("America/Los_Angeles")


def test_catch_up_retry_job_web_and_clean_stop(
    database: Database, settings: Settings, tmp_path: Path
) -> None:
    # The send time was five minutes ago and nothing went out: the daemon catches up on start.
    fire = (dt.datetime.now(LA) - dt.timedelta(minutes=5)).replace(microsecond=0)
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / f"{fire.date()}-hedges.md").write_text(
        "---\ntitle: Hedges in winter\n---\nA hedge is a slow city.\n"
    )
    settings = settings.replace(
        schedule=f"{DAYS[fire.weekday()]} {fire:%H:%M:%S}",
        article_source=str(folder),
        retry_initial_seconds=0.5,
    )
    with database.sessions.begin() as session:
        for email in ("ada@example.org", "bo@example.net"):
            subs.add(session, email, confirmed=True, source="test")
        # Not a fresh installation: it sent last week (a fresh one never catches up).
        record_week(
            session,
            fire.date() - dt.timedelta(days=7),
            status=IssueStatus.SKIPPED,
            reason="last week",
            now=utc_clock() - dt.timedelta(days=7),
        )

    refused_once: set[str] = set()
    lock = threading.Lock()

    def first_try_fails_for_ada(envelope: Envelope) -> SendResult | None:
        with lock:
            if envelope.recipient == "ada@example.org" and not refused_once:
                refused_once.add(envelope.recipient)
                raise TemporaryFailure("451 4.3.0 try again later", code=451)
        return None

    backend = MemoryBackend(first_try_fails_for_ada)
    delivery = Runner(settings, database.sessions, backend)  # polls for the deferred row
    job = WeeklyJob(
        settings,
        database.sessions,
        clock=utc_clock,
        on_enqueued=delivery.wake,
    )
    web_app = create_app(settings, db=database, backend=MemoryBackend())
    web = WebServer(web_app, host="127.0.0.1", port=0)
    daemon = Daemon(job, delivery=delivery, web=web, reconcile_seconds=3600, retry_seconds=0.3)
    try:
        daemon.start()
        with urllib.request.urlopen(web.url + "/healthz", timeout=10) as answer:
            assert answer.status == 200
        deadline = time.monotonic() + 30
        while len(backend.sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        daemon.stop()
        close_app(web_app)

    assert sorted(e.recipient for e in backend.sent) == ["ada@example.org", "bo@example.net"]
    assert backend.attempts == 3  # ada's first try was deferred, the runner's poll sent it
    with database.sessions.begin() as session:
        issue = session.scalars(select(Issue).where(Issue.status != "skipped")).one()
        assert (issue.send_week, issue.title) == (fire.date(), "Hedges in winter")
        rows = session.execute(select(Delivery.status, Delivery.attempts)).all()
        assert sorted(rows) == [("sent", 1), ("sent", 2)]
    with pytest.raises(urllib.error.URLError):  # the web server is gone
        urllib.request.urlopen(web.url + "/healthz", timeout=2)
    daemon.stop()  # twice is fine


def test_a_web_server_stopped_before_it_started_frees_its_port(
    database: Database, settings: Settings
) -> None:
    web_app = create_app(settings, db=database, backend=MemoryBackend())
    try:
        web = WebServer(web_app, host="127.0.0.1", port=0)
        port = int(web.url.rsplit(":", 1)[1])
        assert port in listening_ports_of_this_process()
        web.stop()
        # This process no longer holds the port. (Binding it again would race with any other
        # process on the machine that picks the same ephemeral port meanwhile.)
        assert port not in listening_ports_of_this_process()
    finally:
        close_app(web_app)


def listening_ports_of_this_process() -> set[int]:
    """Loopback TCP ports on which a socket of this process listens (Linux /proc)."""
    import os

    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports
