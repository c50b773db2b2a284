"""`send`, `issues list|show|retry` and `worker` as a user runs them (in-process CLI)."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import dkim
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import update

from tests.support.send import Workspace, message_id, recipients
from tests.support.smtpd import Faults, SMTPServer
from weekly_mailer.cli import main
from weekly_mailer.delivery.pipeline import WINDOW
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery


def invoke(ws: Workspace, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(ws.config), *args], input=input)


@pytest.fixture
def ws(workdir: Path) -> Workspace:
    w = Workspace(workdir, backend_url=f"file://{workdir / 'outbox'}")
    w.add_subscribers(12)
    return w


def outbox_files(ws: Workspace) -> list[Path]:
    folder = ws.root / "outbox"
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def test_dry_run_shows_who_and_sends_nothing(ws: Workspace) -> None:
    result = invoke(ws, "send", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would go to 12 subscribers" in result.output
    assert "reader00000@example.org" in result.output and "… and 2 more" in result.output
    assert "Nothing was sent." in result.output
    assert outbox_files(ws) == [] and ws.ledger() == {}
    listed = invoke(ws, "issues", "list")
    assert "No issues yet" in listed.output


def test_send_then_again_sends_nothing_new(ws: Workspace) -> None:
    first = invoke(ws, "send", "--yes")
    assert first.exit_code == 0, first.output
    assert "queued for 12 subscribers" in first.output
    assert "This run: 12 sent" in first.output
    files = outbox_files(ws)
    assert len(files) == 12
    stamps = {f: f.stat().st_mtime_ns for f in files}
    second = invoke(ws, "send", "--yes")
    assert second.exit_code == 0, second.output
    assert "was already sent: nothing new" in second.output
    assert {f: f.stat().st_mtime_ns for f in outbox_files(ws)} == stamps
    listed = invoke(ws, "issues", "list")
    assert re.search(r"(?m)^ 1 \d{4}-\d\d-\d\d sent\s+Notes from the", listed.output)


def test_send_asks_first_and_a_no_sends_nothing(ws: Workspace) -> None:
    result = invoke(ws, "send", input="n\n")
    assert result.exit_code == 1
    assert "Send 'Notes from the allotment' to 12 subscribers now?" in result.output
    assert outbox_files(ws) == [] and ws.ledger() == {}


def test_a_lint_error_stops_the_send(ws: Workspace) -> None:
    bad = ws.root / "bad.md"
    bad.write_text("---\ntitle: Broken\n---\nSee [this page](relative/page.html).\n")
    result = invoke(ws, "send", str(bad), "--yes")
    assert result.exit_code == 1
    assert result.output.startswith("Error: the issue did not pass the checks, nothing was sent")
    assert "relative" in result.output
    assert outbox_files(ws) == [] and ws.ledger() == {}
    assert "No issues yet" in invoke(ws, "issues", "list").output


def test_missing_article_and_bad_backend_fail_before_anything(ws: Workspace) -> None:
    result = invoke(ws, "send", str(ws.root / "nope.md"), "--yes")
    assert result.exit_code == 1 and "cannot read the article" in result.output
    text = ws.config.read_text().replace(f"file://{ws.root / 'outbox'}", "pigeon://loft")
    ws.config.write_text(text)
    result = invoke(ws, "send", "--yes")
    assert result.exit_code == 2
    assert "Error: backend_url: unknown scheme 'pigeon'" in result.output
    assert ws.ledger() == {}


def test_failures_are_shown_with_smtp_replies_and_retried(workdir: Path) -> None:
    faults = Faults(refuse={"reader00003@example.org", "reader00007@example.org"})
    with SMTPServer(faults) as server:
        ws = Workspace(workdir, backend_url=server.url, bounce_limit=5)
        ws.add_subscribers(10)
        sent = invoke(ws, "send", "--yes")
        assert sent.exit_code == 0, sent.output
        assert "This run: 8 sent, 0 deferred, 2 failed" in sent.output
        shown = invoke(ws, "issues", "show", "1")
        assert shown.exit_code == 0
        assert re.search(r"│ failed\s+│\s+2 │", shown.output)
        assert re.search(
            r"reader00003@example\.org\s+│ failed │ 1\s+│ 550 5\.1\.1 No such user here",
            shown.output,
        )
        assert "weekly-mailer issues retry 1" in shown.output
        # The address is fixed at the other end: a plain retry leaves 5xx refusals alone,
        # --include-bounced sends those two, and only those.
        faults.refuse.clear()
        plain = invoke(ws, "issues", "retry", "1")
        assert plain.exit_code == 0, plain.output
        assert "Queued 0 deliveries of issue #1 again." in plain.output
        retried = invoke(ws, "issues", "retry", "1", "--include-bounced")
        assert retried.exit_code == 0, retried.output
        assert "Queued 2 deliveries of issue #1 again." in retried.output
        got = recipients(server.received())
    assert len(got) == 10 and max(got.values()) == 1
    assert set(ws.ledger()) == {"sent"}
    missing = invoke(ws, "issues", "show", "99")
    assert missing.exit_code == 1 and "there is no issue 99" in missing.output


def test_worker_command_delivers_queued_rows(workdir: Path) -> None:
    with SMTPServer() as server:
        ws = Workspace(workdir, backend_url=server.url)
        ws.add_subscribers(5)
        faults_off = invoke(ws, "send", "--yes")
        assert faults_off.exit_code == 0
        # Queue them all again by hand (as after an outage), then let the worker deliver.
        import sqlite3

        con = sqlite3.connect(ws.db_path)
        con.execute("UPDATE delivery SET status='failed'")
        con.commit()
        con.close()
        assert invoke(ws, "issues", "retry", "1", "--no-send").exit_code == 0
        out = invoke(ws, "worker", "--once")
        assert out.exit_code == 0, out.output
        assert "Worker stopped: 5 sent" in out.output
        assert len(server.received()) == 10


def test_dkim_signature_verifies(workdir: Path) -> None:
    key = workdir / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    with SMTPServer() as server:
        ws = Workspace(
            workdir,
            backend_url=server.url,
            dkim_domain="example.org",
            dkim_selector="wm2026",
            dkim_key_file=str(key),
        )
        ws.add_subscribers(2)
        assert invoke(ws, "send", "--yes").exit_code == 0
        messages = server.received()
    assert len(messages) == 2
    for m in messages:
        assert m.data.startswith(b"DKIM-Signature:")
        header = m.data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b"").replace(b"\r\n ", b" ")
        signed = re.search(rb"h=([^;]+);", header)
        assert signed is not None
        names = {h.strip().lower() for h in signed.group(1).split(b":")}
        assert {b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe",
                b"list-unsubscribe-post"} <= names  # fmt: skip

        def dns(name: bytes, timeout: int = 5) -> bytes:
            assert name == b"wm2026._domainkey.example.org."
            return record

        assert dkim.verify(m.data, dnsfunc=dns), message_id(m.data)


def test_half_configured_dkim_is_a_config_error(ws: Workspace) -> None:
    ws.config.write_text(ws.config.read_text() + 'dkim_domain = "example.org"\n')
    result = invoke(ws, "send", "--yes")
    assert result.exit_code == 2
    assert "dkim_domain, dkim_selector and dkim_key_file must be set together" in result.output


@pytest.mark.postgres
def test_send_on_postgresql(workdir: Path, pg_url: str) -> None:
    faults = Faults(refuse={"reader00002@example.org"})
    with SMTPServer(faults) as server:
        ws = Workspace(workdir, backend_url=server.url, database_url=pg_url, concurrency=3)
        ws.add_subscribers(40)
        first = invoke(ws, "send", "--yes")
        assert first.exit_code == 0, first.output
        assert "This run: 39 sent, 0 deferred, 1 failed" in first.output
        again = invoke(ws, "send", "--yes")
        assert "was already sent: nothing new" in again.output
        shown = invoke(ws, "issues", "show", "1")
        assert "status sent" in shown.output and "550 5.1.1 No such user here" in shown.output
        got = recipients(server.received())
    assert len(got) == 39 and max(got.values()) == 1


def test_an_unreachable_smtp_server_stops_the_send_and_counts_nothing(workdir: Path) -> None:
    import socket

    # A port bound (so no one else can take it) but not listening: connections are refused.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        ws = Workspace(workdir, backend_url=f"smtp://127.0.0.1:{port}", smtp_timeout=2)
        ws.add_subscribers(6)
        result = invoke(ws, "send", "--yes")
    assert result.exit_code == 1
    # The pre-flight's relay check stops it before the issue is stored (issue #22).
    assert f"Error: relay 127.0.0.1:{port} does not answer" in result.output
    assert result.output.rstrip().endswith("nothing was stored")
    assert ws.ledger() == {}


PLUGIN = """
from weekly_mailer.delivery.backends.base import SendResult

class Jar:
    def __init__(self, folder):
        self.folder = folder
    def send(self, envelope):
        import pathlib
        name = envelope.message_id.strip("<>") + ".msg"
        (pathlib.Path(self.folder) / name).write_bytes(envelope.data)
        return SendResult(250, "in the jar")
    def close(self):
        pass
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.close()

def factory(settings):
    return Jar(settings.backend_url.split("://", 1)[1])
"""


def test_send_through_a_third_party_backend_entry_point(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = workdir / "site"
    dist = site / "jar_backend-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "jar_backend.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jar-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[weekly_mailer.backends]\njar = jar_backend:factory\n")
    jar = workdir / "jar"
    jar.mkdir()
    monkeypatch.syspath_prepend(str(site))  # so this process accepts the config too
    ws = Workspace(workdir, backend_url=f"jar://{jar}")
    ws.add_subscribers(3)
    out = subprocess.run(
        [sys.executable, "-m", "weekly_mailer", "send", "--yes"],
        cwd=workdir, env=ws.env() | {"PYTHONPATH": str(site)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "This run: 3 sent" in out.stdout
    assert len(list(jar.glob("*.msg"))) == 3
    assert {c for _, _, c in ws.ledger()["sent"]} == {250}


def issue_rows(ws: Workspace) -> list[tuple[int, str, str]]:
    import sqlite3

    con = sqlite3.connect(ws.db_path)
    try:
        return con.execute("SELECT id, status, title FROM issue ORDER BY send_week").fetchall()
    finally:
        con.close()


def test_no_active_subscribers_leaves_the_week_open(workdir: Path) -> None:
    ws = Workspace(workdir, backend_url=f"file://{workdir / 'outbox'}")
    result = invoke(ws, "send", "--yes")
    assert result.exit_code == 1
    assert result.output == ("Error: no active subscribers: nothing to send; the week stays open\n")
    assert issue_rows(ws) == []
    dry = invoke(ws, "send", "--dry-run")
    assert dry.exit_code == 0 and "would go to 0 subscribers" in dry.output
    assert "no active subscribers" in dry.output and issue_rows(ws) == []
    # Subscribers join later in the week: the week can still be sent.
    ws.add_subscribers(2)
    later = invoke(ws, "send", "--yes")
    assert later.exit_code == 0, later.output
    assert "This run: 2 sent" in later.output


def test_allow_empty_records_the_week_with_no_one_to_send_to(workdir: Path) -> None:
    ws = Workspace(workdir, backend_url=f"file://{workdir / 'outbox'}")
    result = invoke(ws, "send", "--yes", "--allow-empty")
    assert result.exit_code == 0, result.output
    assert "queued for 0 subscribers" in result.output
    assert issue_rows(ws) == [(1, "sent", "Notes from the allotment")]


def record_this_week(ws: Workspace, status: str) -> None:
    from weekly_mailer.clock import utcnow
    from weekly_mailer.issues.ledger import record_week
    from weekly_mailer.issues.weeks import send_week_for
    from weekly_mailer.store.db import Database
    from weekly_mailer.store.models import IssueStatus

    now = utcnow()
    with Database(ws.settings) as db, db.sessions.begin() as session:
        record_week(
            session,
            send_week_for(now, ws.settings),
            status=IssueStatus(status),
            reason="no issue 13h05m after the send time",
            now=now,
        )


def test_force_week_sends_a_week_recorded_as_missed_once(ws: Workspace) -> None:
    record_this_week(ws, "missed")
    refused = invoke(ws, "send", "--yes")
    assert refused.exit_code == 1
    assert "is recorded as missed (no issue 13h05m after the send time)" in refused.output
    assert "send it anyway with --force-week" in refused.output
    assert outbox_files(ws) == []
    forced = invoke(ws, "send", "--yes", "--force-week")
    assert forced.exit_code == 0, forced.output
    assert "Issue #1 'Notes from the allotment': queued for 12 subscribers." in forced.output
    assert "This run: 12 sent" in forced.output
    assert issue_rows(ws) == [(1, "sent", "Notes from the allotment")]  # the same row
    # Never twice, with or without the flag.
    again = invoke(ws, "send", "--yes", "--force-week")
    assert again.exit_code == 0
    assert "was already sent: nothing new" in again.output
    assert len(outbox_files(ws)) == 12
    assert "--force-week" in invoke(ws, "send", "--help").output


def test_force_week_on_a_skipped_week_with_a_dry_run_changes_nothing(ws: Workspace) -> None:
    record_this_week(ws, "skipped")
    dry = invoke(ws, "send", "--dry-run", "--force-week")
    assert dry.exit_code == 0, dry.output
    assert "would go to 12 subscribers" in dry.output
    assert issue_rows(ws) == [(1, "skipped", "")]


def test_a_rerun_says_why_it_waits_for_rows_a_killed_send_left_leased(ws: Workspace) -> None:
    import datetime as dt

    from sqlalchemy import select, update

    from weekly_mailer.clock import utcnow
    from weekly_mailer.store.db import Database
    from weekly_mailer.store.models import Delivery, Issue
    assert invoke(ws, "send", "--yes").exit_code == 0
    # As a `send` killed with SIGKILL leaves them: 3 rows `sending` under a live lease.
    until = utcnow() + dt.timedelta(seconds=2)
    with Database(ws.settings) as db, db.sessions.begin() as session:
        ids = session.scalars(select(Delivery.id).order_by(Delivery.id).limit(3)).all()
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(status="sending", lease_owner="dead:1", lease_expires_at=until)
        )
        session.execute(update(Issue).values(status="sending", finished_at=None))
    result = invoke(ws, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert "3 deliveries still to do" in result.output
    assert (
        f"waiting for 3 rows leased by a stopped process until {until:%H:%M:%S} UTC"
        in result.output
    )
    assert "This run: 3 sent" in result.output
    assert set(ws.ledger()) == {"sent"}


def test_another_source_for_a_week_already_sent_is_refused(ws: Workspace) -> None:
    first = invoke(ws, "send", str(ws.root / "article.md"), "--yes")
    assert first.exit_code == 0, first.output
    files = outbox_files(ws)
    other = ws.root / "other.md"
    other.write_text((ws.root / "article.md").read_text().replace("allotment", "orchard"))
    refused = invoke(ws, "send", str(other), "--yes")
    assert refused.exit_code == 1, refused.output
    assert "Error: issue #1 for the week of " in refused.output
    assert f"exists; {other} is not used: the week was already sent" in refused.output
    assert "--force-week only sends a week recorded as skipped or missed" in refused.output
    assert outbox_files(ws) == files
    # the same SOURCE again is a rerun: nothing new, no error
    again = invoke(ws, "send", str(ws.root / "article.md"), "--yes")
    assert again.exit_code == 0, again.output
    assert "was already sent: nothing new" in again.output


def test_another_source_while_the_weeks_issue_is_still_queued_is_refused(ws: Workspace) -> None:
    assert invoke(ws, "send", "--yes").exit_code == 0
    other = ws.root / "other.md"
    other.write_text((ws.root / "article.md").read_text())
    with Database(ws.settings) as db, db.sessions.begin() as session:  # as if stopped midway
        session.execute(update(Delivery).values(status="queued"))
    refused = invoke(ws, "send", str(other), "--yes")
    assert refused.exit_code == 1, refused.output
    assert f"{other} is not used: run `send` without SOURCE to finish" in refused.output


def test_send_to_a_server_refusing_every_mailbox_stops_and_bounces_nobody(workdir: Path) -> None:
    import sqlite3

    with SMTPServer() as server:
        ws = Workspace(
            workdir,
            backend_url=server.url,
            bounce_limit=1,
            concurrency=2,
            processes=2,
            batch_size=20,
        )
        emails = ws.add_subscribers(100)
        server.faults.refuse = set(emails)
        result = ws.run("send", "--yes")
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "recipients in a row the same refusal" in errors[0]
    assert "550 5.1.1" in errors[0]
    ledger = ws.ledger()
    # The 2 delivery processes (one connection each) count one streak between them (in shared
    # memory): 20 in a row across both trip it, the other stops at its next refusal and its
    # held streak is dropped too. Beyond the 20, only what was in flight: WINDOW chunks of 2
    # in each process.
    assert 20 <= len(ledger["failed"]) <= 20 + 2 * WINDOW * 2
    assert len(ledger["failed"]) + len(ledger["queued"]) == 100
    con = sqlite3.connect(ws.db_path)
    try:
        rows = con.execute("SELECT status, bounce_count FROM subscriber").fetchall()
    finally:
        con.close()
    assert rows and all(row == ("active", 0) for row in rows), rows


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("Error: "), result.stderr
    return errors[0]


def test_a_copy_that_cannot_be_composed_for_anyone_stores_nothing(workdir: Path) -> None:
    # a base_url so long that every unsubscribe link passes the 700-character URL limit
    long_base = "https://news.example.org/" + "a" * 660
    ws = Workspace(workdir, backend_url=f"file://{workdir / 'outbox'}", base_url=long_base)
    ws.add_subscribers(3)
    result = ws.run("send", "--yes")
    assert result.returncode == 1, result.stdout
    line = _one_error_line(result)
    assert "cannot compose a copy for any subscriber" in line and "unsubscribe URL" in line
    assert ws.ledger() == {} and outbox_files(ws) == []
    listed = ws.run("issues", "list")
    assert "No issues yet" in listed.stdout


def test_send_exits_1_when_nothing_could_be_sent(workdir: Path) -> None:
    with SMTPServer() as server:
        ws = Workspace(workdir, backend_url=server.url)
        emails = ws.add_subscribers(4)  # fewer than the breaker's 20: each is refused
        server.faults.refuse = set(emails)
        result = ws.run("send", "--yes")
    assert result.returncode == 1, result.stdout
    line = _one_error_line(result)
    assert line.startswith("Error: nothing could be sent: 4 deliveries failed (first: 550")
    assert "This run: 0 sent, 0 deferred, 4 failed" in result.stdout
    assert len(ws.ledger()["failed"]) == 4


def test_issues_list_and_show_print_markup_like_text_as_it_is(workdir: Path) -> None:
    ws = Workspace(workdir, backend_url=f"file://{workdir / 'outbox'}")
    ws.add_subscribers(2)
    (workdir / "article.md").write_text(
        ws_article := "---\ntitle: Notes [/] and [bold]\ndate: 2026-11-20\n---\nPlain text.\n"
    )
    assert "[/]" in ws_article
    assert ws.run("send", "--yes").returncode == 0
    with Database(ws.settings) as db, db.sessions.begin() as s:
        s.execute(
            update(Delivery)
            .where(Delivery.id == 1)
            .values(status="failed", last_code=550, last_error="550 5.7.1 [/] refused [red]")
        )
    listed = ws.run("issues", "list")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert "Notes [/] and [bold]" in listed.stdout
    shown = ws.run("issues", "show", "1")
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert "Notes [/] and [bold]" in shown.stdout
    assert "550 5.7.1 [/] refused [red]" in shown.stdout
