"""The list-health guard, done-when: an issue with complaints above the limit holds the next
week's send in the real daemon (`weekly-mailer run` as a subprocess), and `issues release` lets
the daemon send it.

Last week's issue is made and delivered to a real SMTP server (aiosmtpd) in-process with last
week's clock (the daemon cannot be sent back in time); every step after that is a subprocess: an
ARF report built from a copy the server received, read by `bounces ingest`; `issues list`,
`send` and `doctor` saying the week is held; the daemon refusing it; `issues release`; the
daemon sending it.
"""

from __future__ import annotations

import datetime as dt
import mailbox
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import run_cli
from tests.scheduler.test_daemon_e2e import (
    READERS,
    DaemonWorkspace,
    per_recipient,
    schedule_in,
    terminate,
    wait_for,
)
from tests.support.smtpd import SMTPServer
from weekly_mailer import issues
from weekly_mailer.delivery import resolve_backend
from weekly_mailer.delivery.run import deliver_issue
from weekly_mailer.store.db import Database
from weekly_mailer.store.hold_models import WeekHold

pytestmark = pytest.mark.slow

MORE = [f"reader{i:02d}@example.org" for i in range(17)]  # 20 readers in all


def arf_for(received: bytes) -> bytes:
    """An ARF abuse report about one copy, with the copy's own header block (as Yahoo, AOL and
    Microsoft's JMRP send it: the original headers, the body left out)."""
    headers = received.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (
        b"From: Feedback Loop <fbl@isp.example.net>\r\nTo: abuse@example.org\r\n"
        b"Subject: Abuse report\r\nMessage-ID: <fbl.77@isp.example.net>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        b"--F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        b"--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        b"Feedback-Type: abuse\r\nUser-Agent: ISP-FBL/2.1\r\nVersion: 1\r\n"
        b"Original-Rcpt-To: ada@example.org\r\nArrival-Date: Thu, 26 Nov 2026 09:00:00 +0000\r\n"
        b"\r\n--F\r\nContent-Type: text/rfc822-headers\r\n\r\n" + headers + b"\r\n\r\n--F--\r\n"
    )


def send_last_week(ws: DaemonWorkspace, fire: dt.datetime) -> int:
    """Make and deliver last week's issue to every reader, with last week's clock."""
    settings = ws.settings()
    then = (fire - dt.timedelta(days=7)).astimezone(dt.UTC)
    article = ws.root / "last-week.md"
    article.write_text(
        f"---\ntitle: Frost on the pond\ndate: {then.date() - dt.timedelta(days=1)}\n---\n"
        "The pond froze early this year; the moorhens walk on it.\n"
    )
    with Database(settings) as db:
        with db.sessions.begin() as session:
            look = issues.look_at_week(session, settings, now=then)
        plan = issues.plan_week(look, settings, source=str(article))
        with db.sessions.begin() as session:
            issue_id = issues.prepare_week(session, plan, now=then).issue.id
        with resolve_backend(settings) as backend:
            stats = deliver_issue(
                db.sessions, settings, backend, issue_id, stop=threading.Event(),
                max_wait=5, clock=lambda: then + dt.timedelta(minutes=2),
            )  # fmt: skip
        assert stats.sent == 20
        with db.sessions.begin() as session:
            assert issues.get_issue(session, issue_id).status == "sent"
    return issue_id


def test_complaints_above_the_limit_hold_the_next_send_until_released(
    tmp_path: Path,
) -> None:
    with SMTPServer() as smtp:
        ws = DaemonWorkspace(tmp_path, smtp_url=smtp.url)
        ws.add_readers(MORE)
        schedule, fire = schedule_in(-90)  # this week's send time passed 90 s ago
        ws.write_config(schedule=schedule)
        week = fire.date()
        last = send_last_week(ws, fire)
        assert per_recipient(smtp) == Counter(READERS + MORE)
        env = {"WEEKLY_MAILER_CONFIG": str(ws.config), "COLUMNS": "200"}

        # One reader of 20 reports it as spam: 5%, above the 0.3% limit.
        (ada,) = smtp.to("ada@example.org")
        box = mailbox.mbox(str(tmp_path / "fbl.mbox"))
        box.add(arf_for(ada.data))
        box.close()
        r = run_cli("bounces", "ingest", "fbl.mbox", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        assert "1 complaints" in r.stdout
        assert (
            f"List health: issue #{last} (week of {week - dt.timedelta(days=7)}): complaint "
            "rate 5.00% (1 complaints of 20 delivered) is above complaint_rate_limit 0.30%: "
            f"the weekly send is held from the week of {week} on"
        ) in r.stdout

        r = run_cli("issues", "list", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        assert f"HELD: the weekly send is held from the week of {week} on: issue #{last}" in (
            r.stdout
        )
        r = run_cli("send", "--yes", cwd=tmp_path, env=env)
        assert r.returncode == 3, r.stdout + r.stderr
        assert r.stderr.startswith(
            f"Error: the weekly send is held from the week of {week} on by the list-health guard"
        )
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        r = run_cli("doctor", cwd=tmp_path, env=env)
        assert r.returncode == 1
        assert f"the weekly send is HELD from the week of {week} on: issue #{last}" in r.stdout

        # The daemon catches the week up within the grace window: held, so nothing goes.
        try:
            ws.start("daemon", extra=("--check-interval", "1"))
            wait_for(lambda: "HELD, not sent" in ws.log("daemon"), 30, "the daemon refusing")
            time.sleep(3)  # three more checks
            assert len(smtp.received()) == 20
            assert [w for w, _s, _n in ws.issues()] == [week - dt.timedelta(days=7)]
            assert ws.log("daemon").count("HELD, not sent") == 1  # loudly once

            r = run_cli("issues", "release", "--by", "ops", cwd=tmp_path, env=env)
            assert r.returncode == 0, r.stderr
            assert r.stdout.startswith(f"Released the hold from the week of {week} (issue #")
            assert ", by ops at " in r.stdout

            # The next check sends it: to everyone but the reader who complained.
            wait_for(lambda: len(smtp.received()) >= 39, 60, "this week's issue sent")
            wait_for(lambda: ws.issues()[-1][1:] == ("sent", 19), 30, "the issue marked sent")
            this_week = Counter(r.lower() for m in smtp.received()[20:] for r in m.rcpt_tos)
            assert this_week == Counter(e for e in READERS + MORE if e != "ada@example.org")
            log = ws.log("daemon")
            assert f"week of {week}: issue #{last + 1}" in log
            assert "enqueued for 19 subscribers" in log
            assert "Traceback" not in log
        finally:
            for proc, _log in ws.procs:
                if proc.poll() is None:
                    terminate(proc)
            ws.stop_all()
        with Database(ws.settings()) as db, db.sessions.begin() as session:
            (hold,) = session.scalars(select(WeekHold)).all()
            assert (hold.send_week, hold.issue_id, hold.released_by) == (week, last, "ops")
            assert (hold.delivered, hold.complaints) == (20, 1)
