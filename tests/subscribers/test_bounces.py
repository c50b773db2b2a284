"""`weekly-mailer bounces ingest`: DSNs count hard bounces, ARF complaints stop mail."""

from __future__ import annotations

import mailbox
from pathlib import Path

from sqlalchemy import select

from tests.conftest import init_in, run_cli
from weekly_mailer.config import load_settings
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Subscriber


def dsn(recipient: str, *, status: str = "5.1.1", action: str = "failed") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        "To: news@example.org\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "\r\n--B--\r\n"
    ).encode()


def arf(recipient: str) -> bytes:
    return (
        "From: feedback@isp.example.net\r\nTo: abuse@example.org\r\nSubject: Complaint\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="C"\r\n'
        "\r\n--C\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n"
        "--C\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: ISP-FBL/1.0\r\nVersion: 1\r\n"
        "\r\n--C\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@example.org\r\nTo: {recipient}\r\nSubject: This week\r\n"
        "\r\n--C--\r\n"
    ).encode()


def statuses(workdir: Path) -> dict[str, tuple[str, int]]:
    with Database(load_settings(environ={})) as db, db.sessions.begin() as s:
        return {x.email: (x.status, x.bounce_count) for x in s.scalars(select(Subscriber))}


def test_ingest_from_stdin_and_maildir(workdir: Path) -> None:
    assert run_cli("init", cwd=workdir, env={"WEEKLY_MAILER_BOUNCE_LIMIT": "2"}).returncode == 0
    for who in ("hard@example.org", "soft@example.org", "angry@example.org"):
        assert run_cli("subscribers", "add", who, "--confirmed", cwd=workdir).returncode == 0
    # No send, so no VERP or Message-ID to tie these hand-written reports: believed as before.
    env = {"WEEKLY_MAILER_BOUNCE_LIMIT": "2", "WEEKLY_MAILER_BOUNCE_TRUST": "any"}

    r = run_cli("bounces", "ingest", cwd=workdir, env=env, input=dsn("hard@example.org").decode())
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1 message: 1 hard bounce (0 subscribers now bounced)")
    assert statuses(workdir)["hard@example.org"] == ("active", 1)

    box = mailbox.Maildir(str(workdir / "reports"), create=True)
    box.add(dsn("HARD@example.org"))
    box.add(dsn("soft@example.org", status="4.2.2", action="delayed"))
    box.add(arf("angry@example.org"))
    box.add(b"From: someone@example.net\r\nSubject: hello\r\n\r\nnot a report\r\n")
    box.add(dsn("stranger@example.net"))
    r = run_cli("bounces", "ingest", "reports", cwd=workdir, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "5 messages: 1 hard bounce (1 subscriber now bounced), 1 temporary failure ignored, "
        "1 complaint, 0 unsubscribe requests, 1 unknown recipient, 1 not reports.",
        "By kind: 2 hard, 1 soft, 0 block, 0 expired, 0 unknown, 1 complaint, 0 opt-out, "
        "0 feedback; 0 auto-replies, 0 already seen.",
    ]
    assert statuses(workdir) == {
        "hard@example.org": ("bounced", 2),
        "soft@example.org": ("active", 0),
        "angry@example.org": ("complained", 0),
    }
    again = run_cli("bounces", "ingest", "reports", cwd=workdir, env=env)
    assert again.stdout.startswith("0 messages:")  # processed messages are not counted twice


def test_ingest_a_saved_message_file_and_stdin_as_dash(workdir: Path) -> None:
    """A report saved from a mail program (one message, no mbox "From " line) is read as one
    message, once however often it is given; ``-`` is standard input."""
    assert run_cli("init", cwd=workdir).returncode == 0
    for who in ("hard@example.org", "angry@example.org"):
        assert run_cli("subscribers", "add", who, "--confirmed", cwd=workdir).returncode == 0
    env = {"WEEKLY_MAILER_BOUNCE_LIMIT": "1", "WEEKLY_MAILER_BOUNCE_TRUST": "any"}
    saved = b"Return-Path: <>\r\nMessage-ID: <dsn.1@mx.example.net>\r\n" + dsn("hard@example.org")
    (workdir / "returned.eml").write_bytes(saved)
    r = run_cli("bounces", "ingest", "returned.eml", cwd=workdir, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1 message: 1 hard bounce (1 subscriber now bounced)")
    again = run_cli("bounces", "ingest", "returned.eml", cwd=workdir, env=env)
    assert "1 already seen" in again.stdout
    r = run_cli(
        "bounces", "ingest", "-", cwd=workdir, env=env, input=arf("angry@example.org").decode()
    )
    assert r.returncode == 0, r.stderr
    assert "1 complaint," in r.stdout
    assert statuses(workdir) == {
        "hard@example.org": ("bounced", 1),
        "angry@example.org": ("complained", 0),
    }


def test_ingest_errors(workdir: Path) -> None:
    init_in(workdir)
    r = run_cli("bounces", "ingest", "nowhere", cwd=workdir)
    assert (r.returncode, r.stderr.strip()) == (
        1,
        "Error: bounces ingest: nowhere is neither a maildir nor an mbox file (no such file)",
    )
    (workdir / "folder").mkdir()
    r = run_cli("bounces", "ingest", "folder", cwd=workdir)
    assert (r.returncode, r.stderr.strip()) == (
        1,
        "Error: bounces ingest: folder is not a maildir (no new/ folder)",
    )
    (workdir / "notes.txt").write_text("hello\n")
    r = run_cli("bounces", "ingest", "notes.txt", cwd=workdir)
    assert (r.returncode, r.stderr.strip()) == (
        1,
        "Error: bounces ingest: notes.txt is neither an mbox file (it does not start with "
        "'From ') nor a message (it does not start with a header field)",
    )
    r = run_cli("bounces", "ingest", cwd=workdir, input="")
    assert r.stderr.strip() == "Error: bounces ingest: no message on standard input"


def test_mailto_unsubscribe_requests(workdir: Path) -> None:
    env = {"WEEKLY_MAILER_UNSUBSCRIBE_MAILTO": "leave@example.org"}
    assert run_cli("init", cwd=workdir, env=env).returncode == 0
    assert (
        run_cli("subscribers", "add", "Reader@example.org", "--confirmed", cwd=workdir).returncode
        == 0
    )
    request = (
        "From: Reader <reader@example.org>\r\nTo: <leave@example.org>\r\n"
        "Subject: unsubscribe\r\n\r\n"
    )
    r = run_cli("bounces", "ingest", cwd=workdir, env={}, input=request)
    assert "0 unsubscribe requests" in r.stdout  # without unsubscribe_mailto: not ours to act on
    assert statuses(workdir)["Reader@example.org"][0] == "active"
    r = run_cli("bounces", "ingest", cwd=workdir, env=env, input=request)
    assert r.returncode == 0, r.stderr
    assert "1 unsubscribe request," in r.stdout
    assert statuses(workdir)["Reader@example.org"][0] == "unsubscribed"
