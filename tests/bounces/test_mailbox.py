"""`bounces fetch` and `run` against a real Dovecot (IMAP and POP3), as real subprocesses.

The folder holds 30 reports of ours (20 DSNs to signed VERP addresses, 10 ARF complaints
quoting our Message-IDs) and 5 mails from people. Each report must be applied once (its
``bounce_event`` row, the reader's status), the people's mail must stay unread where it was, the
reports must end in ``Processed`` (POP3: deleted); a SIGKILL mid-fetch and a rerun still apply
each once; `run` applies a report delivered while it runs.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.issues.test_health import LAST_WEEK, sent_issue
from tests.support.dovecot import Dovecot
from tests.support.send import Workspace, wait_for
from weekly_mailer.compose import make_message_id
from weekly_mailer.store.db import Database, make_engine
from weekly_mailer.store.models import Delivery, Subscriber
from weekly_mailer.tokens import VerpCodec
from weekly_mailer.words import plural

pytestmark = pytest.mark.slow

BOUNCES = "bounces@example.org"
HARD, COMPLAINTS, PEOPLE = 20, 10, 5


def verp_dsn(verp_address: str, failed_for: str, n: int) -> bytes:
    """A Postfix-style DSN for a copy sent from ``verp_address``, delivered back to it."""
    return (
        "Return-Path: <>\r\n"
        f"Delivered-To: {verp_address}\r\n"
        "From: MAILER-DAEMON@mx.fieldfare.example (Mail Delivery System)\r\n"
        f"To: {verp_address}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-b"\r\n'
        f"Message-Id: <bounce.{n}.7f3a@mx.fieldfare.example>\r\n\r\n"
        "--dsn-b\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system at host mx.fieldfare.example.\r\n\r\n"
        f"<{failed_for}>: host mx.fieldfare.example said: 550 5.1.1 mailbox does not exist\r\n"
        "\r\n--dsn-b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.fieldfare.example\r\n\r\n"
        f"Final-Recipient: rfc822; {failed_for}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{failed_for}>: mailbox does not exist\r\n"
        "\r\n--dsn-b--\r\n"
    ).encode()


def arf(message_id: str, recipient: str, n: int) -> bytes:
    """An ARF abuse report quoting the headers of the copy we sent ``recipient``."""
    return (
        "From: fbl@feedback.wrenmail.example\r\n"
        f"To: {BOUNCES}\r\n"
        f"Message-ID: <fbl.{n}.c0ffee@feedback.wrenmail.example>\r\n"
        "Subject: Abuse report\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="fbl"\r\n'
        "\r\n--fbl\r\nContent-Type: text/plain\r\n\r\n"
        "A user of ours marked this message as spam.\r\n"
        "--fbl\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: WrenFBL/2.1\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: {recipient}\r\n"
        "\r\n--fbl\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@example.org\r\nTo: {recipient}\r\nSubject: Notes from the allotment\r\n"
        f"Message-ID: {message_id}\r\n"
        "\r\n--fbl--\r\n"
    ).encode()


def person(n: int) -> bytes:
    """Mail a person wrote to the bounce address: not a report."""
    return (
        f"From: Morgan Reed {n} <morgan.reed{n}@example.net>\r\n"
        f"To: {BOUNCES}\r\n"
        f"Subject: Question about the allotment piece ({n})\r\n"
        f"Message-ID: <person.{n}.a1@example.net>\r\n"
        "Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello,\r\n\r\nI enjoyed this week's piece about the leeks. Could you tell me where\r\n"
        "the community plots are? My address changed last month, too.\r\n\r\nThanks, Morgan\r\n"
    ).encode()


class Folder:
    """A workspace (config, SQLite, an issue sent to 30 readers) and its bounce mailbox."""

    def __init__(self, root: Path, server: Dovecot, scheme: str, **settings: Any) -> None:
        self.server, self.scheme = server, scheme
        self.ws = Workspace(
            root,
            backend_url=f"file://{root / 'outbox'}",
            bounce_address=BOUNCES,
            bounce_limit=1,
            bounce_mailbox=server.url(scheme),
            **settings,
        )
        s = self.ws.settings
        verp = VerpCodec(s.secret_key, BOUNCES)
        self.reports: list[bytes] = []
        with Database(s) as db, db.sessions.begin() as session:
            _issue, deliveries = sent_issue(session, delivered=HARD + COMPLAINTS + 1)
            rows = [session.get(Delivery, d) for d in deliveries]
            subs = [session.get(Subscriber, r.subscriber_id) for r in rows if r is not None]
            self.emails = [sub.email for sub in subs if sub is not None]
            for i, row in enumerate(rows[:HARD]):
                assert row is not None
                self.reports.append(verp_dsn(verp.address(row.id), self.emails[i], i))
            for i in range(HARD, HARD + COMPLAINTS):
                sub = subs[i]
                assert sub is not None
                mid = make_message_id(s, LAST_WEEK, sub.id)
                self.reports.append(arf(mid, sub.email, i))
        self.people = [person(n) for n in range(PEOPLE)]

    def fill(self) -> None:
        """Reports and people's mail, interleaved, into INBOX (people's first and last)."""
        mail = list(self.reports)
        for n, data in enumerate(self.people):
            mail.insert(n * 8, data)
        for data in mail:
            self.server.append(data)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "weekly_mailer", *args],
            cwd=self.ws.root,
            env=self.ws.env() | env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.ws.settings.database_url.startswith("postgresql"):
            engine = make_engine(self.ws.settings.database_url)
            try:
                with engine.connect() as con:
                    return [tuple(row) for row in con.execute(text(sql))]
            finally:
                engine.dispose()
        con = sqlite3.connect(self.ws.db_path, timeout=30)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def events(self) -> int:
        return int(self.query("SELECT count(*) FROM bounce_event")[0][0])

    def check_applied_once(self) -> None:
        """Each report once: one trusted row per report, 20 bounced, 10 complained."""
        rows = self.query("SELECT message_id, trusted, kind FROM bounce_event")
        assert len(rows) == HARD + COMPLAINTS, rows
        assert len({r[0] for r in rows}) == HARD + COMPLAINTS
        assert all(r[1] == 1 for r in rows)
        status = dict(self.query("SELECT email, status FROM subscriber"))
        assert [status[e] for e in self.emails[:HARD]] == ["bounced"] * HARD
        assert [status[e] for e in self.emails[HARD:-1]] == ["complained"] * COMPLAINTS
        assert status[self.emails[-1]] == "active"  # the reader no report was about

    def check_people_untouched(self) -> None:
        """The people's mail is in INBOX, unread, and nothing else is."""
        inbox = self.server.messages("INBOX")
        assert sorted(_norm(body) for body, _ in inbox) == sorted(map(_norm, self.people))
        assert all("\\Seen" not in flags and "\\Deleted" not in flags for _, flags in inbox)


def _norm(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").strip()


@pytest.mark.parametrize("scheme", ["imaps", "imap", "pop3s", "pop3"])
def test_fetch_applies_each_report_once_and_leaves_peoples_mail_unread(
    tmp_path: Path, scheme: str
) -> None:
    with Dovecot() as server:
        box = Folder(tmp_path, server, scheme)
        box.fill()
        r = box.ws.run("bounces", "fetch")
        assert r.returncode == 0, r.stdout + r.stderr
        lines = [line for line in r.stdout.splitlines() if re.match(r"\d+ <", line)]
        assert sum(": hard " in line and "[VERP delivery" in line for line in lines) == HARD
        assert sum(": complaint " in line and "[quotes our" in line for line in lines) == 10
        assert len(lines) == HARD + COMPLAINTS, r.stdout
        where = "30 moved to Processed" if scheme.startswith("imap") else "30 deleted"
        assert (
            f"30 reports applied (0 untrusted), {where}; 5 other messages left unread where "
            "they were (5 new)." in r.stdout
        ), r.stdout
        assert "List health:" in r.stdout  # 10 complaints of 31 copies hold the next week
        box.check_applied_once()
        box.check_people_untouched()
        if scheme.startswith("imap"):
            processed = server.messages("Processed")
            assert sorted(_norm(b) for b, _ in processed) == sorted(map(_norm, box.reports))
        else:
            assert server.messages("Processed") == []
        kinds = dict(box.query("SELECT outcome, count(*) FROM mailbox_message GROUP BY outcome"))
        assert kinds == {"report": HARD + COMPLAINTS, "other": PEOPLE}
        mailbox = box.query("SELECT DISTINCT mailbox FROM mailbox_message")
        assert mailbox == [(server.url(scheme).split("?")[0].replace(":p%40ss%2Fword", ""),)]

        again = box.ws.run("bounces", "fetch")  # nothing new: nothing changes
        assert again.returncode == 0, again.stderr
        assert "0 reports applied" in again.stdout and "(0 new)" in again.stdout
        assert box.events() == HARD + COMPLAINTS
        box.check_people_untouched()


@pytest.mark.parametrize(
    ("scheme", "engine"), [("imaps", "sqlite"), ("pop3s", "sqlite"), ("imaps", "postgresql")]
)
def test_sigkill_mid_fetch_and_a_rerun_apply_each_report_exactly_once(
    tmp_path: Path, scheme: str, engine: str, request: pytest.FixtureRequest
) -> None:
    more = {"database_url": request.getfixturevalue("pg_url")} if engine == "postgresql" else {}
    with Dovecot() as server:
        box = Folder(tmp_path, server, scheme, **more)
        box.fill()
        proc = box.ws.start("bounces", "fetch")
        try:
            assert wait_for(lambda: box.events() >= 5, timeout=60, step=0.001)
            proc.send_signal(signal.SIGSTOP)  # frozen at once, then killed
            at_kill = box.events()
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert 5 <= at_kill < HARD + COMPLAINTS, at_kill  # killed mid-fetch
        r = box.ws.run("bounces", "fetch")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{plural(HARD + COMPLAINTS - at_kill, 'report')} applied" in r.stdout, r.stdout
        box.check_applied_once()
        box.check_people_untouched()
        if scheme.startswith("imap"):
            assert len(server.messages("Processed")) == HARD + COMPLAINTS


@pytest.mark.parametrize(("scheme", "poll"), [("imap", 600.0), ("pop3s", 1.0)])
def test_run_applies_a_report_delivered_while_it_runs(
    tmp_path: Path, scheme: str, poll: float
) -> None:
    """Over IMAP the poll is 10 minutes: IDLE brings the report; POP3 polls every second."""
    with Dovecot() as server:
        box = Folder(tmp_path, server, scheme, bounce_poll_seconds=poll, log_level="INFO")
        server.append(box.people[0])
        proc = box.ws.start("run", "--no-web")
        try:
            time.sleep(2)  # the daemon reads the mailbox once and waits (IDLE, or its poll)
            assert proc.poll() is None
            server.append(box.reports[0])
            server.append(box.people[1])
            assert wait_for(lambda: box.events() == 1, timeout=60, step=0.05), box.events()
            if scheme.startswith("imap"):
                assert wait_for(lambda: len(server.messages("Processed")) == 1, timeout=30)
            else:  # deleted when the session ends, within a poll
                assert wait_for(lambda: len(server.messages("INBOX")) == 2, timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        status = dict(box.query("SELECT email, status FROM subscriber"))
        assert status[box.emails[0]] == "bounced"
        inbox = server.messages("INBOX")
        assert sorted(_norm(b) for b, _ in inbox) == sorted(map(_norm, box.people[:2]))
        assert all("\\Seen" not in flags for _, flags in inbox)
        assert "bounce mailbox" in err.decode() and "Traceback" not in err.decode()


# `run` as `python -m weekly_mailer run` starts it, but with a first pause after a mailbox
# failure of 0.5 s instead of the poller's 5 s (it doubles from there as ever): the same code,
# the same lines in the log, some 18 s less of the suite spent waiting out pauses.
RUN_WITH_SHORT_PAUSES = (
    "import weekly_mailer.scheduler.mailbox_poll as poller; poller.FIRST_PAUSE = 0.5; "
    "from weekly_mailer.cli import main; main(prog_name='weekly-mailer')"
)


def test_run_rides_out_a_mailbox_that_goes_away_and_reads_it_once_it_is_back(
    tmp_path: Path,
) -> None:
    """The daemon starts with the server down (one line for several tries), reads and IDLEs
    once it is up, loses it while idling (one line), and applies a report that comes once it is
    back."""
    with Dovecot() as server:
        box = Folder(tmp_path, server, "imaps", bounce_poll_seconds=600.0, log_level="INFO")
        server.halt()  # nothing listens there now
        log = tmp_path / "run.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", RUN_WITH_SHORT_PAUSES, "run", "--no-web"],
                cwd=box.ws.root, env=box.ws.env(), stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
            try:
                assert wait_for(lambda: "cannot connect" in log.read_text(), 60, step=0.05)
                time.sleep(2)  # tries 2 and 3 (0.5 s, then 1 s on) fail alike: no new line
                said = log.read_text()
                assert said.count("cannot connect") == 1 and "trying again in 0.5 s" in said
                assert proc.poll() is None  # the daemon lives on
                server.start()
                assert wait_for(lambda: "reachable again" in log.read_text(), 60, step=0.05)
                server.halt()  # gone while the daemon idles on it
                assert wait_for(lambda: log.read_text().count("ERROR") >= 2, 60, step=0.05)
                server.start()
                server.append(box.reports[0])
                assert wait_for(lambda: box.events() == 1, timeout=60, step=0.05)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
        text = log.read_text()
        assert proc.returncode == 0, text
        assert text.count(f"bounce mailbox 127.0.0.1:{server.imaps_port}: cannot connect") <= 2
        assert text.count("reachable again") == 2, text
        assert "Traceback" not in text, text
        assert len(server.messages("Processed")) == 1


def test_untrusted_reports_are_recorded_moved_and_change_nobody(tmp_path: Path) -> None:
    with Dovecot() as server:
        box = Folder(tmp_path, server, "imaps")
        target = box.emails[0]
        forged = verp_dsn(BOUNCES, target, 90)  # to the bare bounce address: no VERP
        tampered = box.reports[1].replace(b"bounces+2-", b"bounces+3-")  # another's mac
        for data in (forged, tampered, box.people[0]):
            server.append(data)
        r = box.run("bounces", "fetch")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "2 reports applied (2 untrusted), 2 moved to Processed" in r.stdout, r.stdout
        assert "1 other message left unread where it was (1 new)" in r.stdout, r.stdout
        assert set(box.query("SELECT status FROM subscriber")) == {("active",)}
        assert box.query("SELECT count(*), sum(trusted) FROM bounce_event") == [(2, 0)]
        assert len(server.messages("Processed")) == 2
        assert [_norm(b) for b, _ in server.messages("INBOX")] == [_norm(box.people[0])]


def test_a_refused_login_an_untrusted_certificate_and_no_server_are_one_line(
    tmp_path: Path,
) -> None:
    with Dovecot() as server:
        box = Folder(tmp_path, server, "imaps")
        env_url = server.url("imaps", password="wrong-pw")
        cases = {
            env_url: "login refused ([AUTHENTICATIONFAILED] Authentication failed.)",
            server.url("imaps").split("?")[0]: "TLS certificate is not trusted",
            server.url("pop3s", password="wrong-pw"): "login refused (-ERR [AUTH] Authentication",
            server.url("imaps", "Nope"): "folder 'Nope' cannot be opened",
        }
        for url, said in cases.items():
            r = box.run("bounces", "fetch", WEEKLY_MAILER_BOUNCE_MAILBOX=url)
            assert r.returncode == 1, r.stdout + r.stderr
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: bounce mailbox"), r.stderr
            assert said in lines[0] and "wrong-pw" not in r.stderr, r.stderr
        port = server.imaps_port
        server.halt()
        r = box.ws.run("bounces", "fetch")  # the server is gone
        assert r.returncode == 1
        assert r.stderr.strip() == (
            f"Error: bounce mailbox 127.0.0.1:{port}: cannot connect (Connection refused)"
        ), r.stderr


@pytest.mark.parametrize("uidplus", [True, False])
def test_without_move_only_the_reports_uids_are_expunged(tmp_path: Path, uidplus: bool) -> None:
    """A server without MOVE (and IDLE): COPY, \\Deleted and UID EXPUNGE of the reports only; a
    message a person flagged \\Deleted stays. Without UIDPLUS nothing is expunged at all."""
    caps = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+" + (" UIDPLUS" if uidplus else "")
    with Dovecot(extra=f"imap_capability = {caps}") as server:
        box = Folder(tmp_path, server, "imaps")
        server.append(box.people[0], flags="\\Deleted")  # a person deleted it, not expunged yet
        for data in box.reports[:6] + box.people[1:3]:
            server.append(data)
        r = box.run("bounces", "fetch")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "6 reports applied (0 untrusted), 6 moved to Processed" in r.stdout, r.stdout
        assert "2 other messages left unread" in r.stdout, r.stdout
        processed = server.messages("Processed")
        assert sorted(_norm(b) for b, _ in processed) == sorted(map(_norm, box.reports[:6]))
        inbox = {_norm(b): flags for b, flags in server.messages("INBOX")}
        assert inbox.pop(_norm(box.people[0])) == {"\\Deleted"}  # still there, as it was
        for data in box.people[1:3]:
            assert "\\Seen" not in inbox.pop(_norm(data))
        if uidplus:
            assert inbox == {}
        else:  # copied and flagged, left for the person's client to expunge
            assert set(inbox) == {_norm(d) for d in box.reports[:6]}
            assert all(flags == {"\\Deleted"} for flags in inbox.values())
            assert "neither MOVE nor UIDPLUS" in r.stderr
        again = box.run("bounces", "fetch")  # nothing is copied twice
        assert again.returncode == 0 and "0 reports applied" in again.stdout, again.stdout
        assert len(server.messages("Processed")) == 6
        assert box.events() == 6


def test_dry_run_reads_everything_and_changes_nothing_here_or_there(tmp_path: Path) -> None:
    with Dovecot() as server:
        box = Folder(tmp_path, server, "imaps")
        box.fill()
        r = box.run("bounces", "fetch", "--dry-run")
        assert r.returncode == 0, r.stdout + r.stderr
        lines = [line for line in r.stdout.splitlines() if re.match(r"\d+ ", line)]
        assert sum(": not a report" in line for line in lines) == PEOPLE, r.stdout
        assert sum("[VERP delivery" in line or "[quotes our" in line for line in lines) == 30
        assert r.stdout.count("Dry run, nothing changed. Mailbox imaps://bounces@") == 1
        assert "30 reports applied (0 untrusted), 0 moved to Processed" in r.stdout
        assert box.events() == 0 and box.query("SELECT count(*) FROM mailbox_message") == [(0,)]
        assert set(box.query("SELECT status FROM subscriber")) == {("active",)}
        inbox = server.messages("INBOX")
        assert len(inbox) == HARD + COMPLAINTS + PEOPLE
        assert all("\\Seen" not in flags for _, flags in inbox)
        assert server.messages("Processed") == []


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_two_fetches_at_once_apply_each_report_once(tmp_path: Path, scheme: str) -> None:
    with Dovecot() as server:
        box = Folder(tmp_path, server, scheme)
        box.fill()
        procs = [box.ws.start("bounces", "fetch") for _ in range(2)]
        results = [p.communicate(timeout=120) for p in procs]
        codes = [p.returncode for p in procs]
        out = [e.decode()[-2000:] for _o, e in results]
        if scheme.startswith("pop3"):  # the maildrop is locked: the second one is told so
            assert sorted(codes) in ([0, 0], [0, 1]), out
        else:
            assert codes == [0, 0], out
        assert "Traceback" not in "".join(out)
        box.check_applied_once()
        # A report one reader recorded is moved or deleted by that reader; should its session
        # end badly (POP3 has no lock on the maildrop here), the next read finishes it.
        third = box.run("bounces", "fetch")
        assert third.returncode == 0 and "0 reports applied" in third.stdout, third.stdout
        box.check_applied_once()
        box.check_people_untouched()


def test_doctor_logs_in_and_says_how_run_will_read_it(tmp_path: Path) -> None:
    with Dovecot() as server:
        box = Folder(tmp_path, server, "imaps")
        server.append(box.people[0])
        r = box.run("doctor")
        key = f"imaps://bounces@127.0.0.1:{server.imaps_port}/INBOX"
        assert (
            f"ok    bounce mailbox {key}: logged in, 1 message there; IMAP IDLE: `run` reads "
            "reports as they arrive" in r.stdout
        ), r.stdout
        r = box.run("doctor", WEEKLY_MAILER_BOUNCE_MAILBOX=server.url("pop3s"))
        assert "; `run` reads it every 300 s" in r.stdout, r.stdout
        r = box.run("doctor", WEEKLY_MAILER_BOUNCE_MAILBOX=server.url("imaps", password="nope"))
        assert r.returncode == 1
        assert f"FAIL  bounce mailbox {key}: login refused" in r.stdout, r.stdout
        assert [(b, f) for b, f in server.messages()][0][1] == set()  # still unread
