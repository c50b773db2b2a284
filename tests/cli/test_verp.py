"""Send-time classes and VERP, end to end: a real `send` subprocess to aiosmtpd, then `issues
show`, `doctor` and `bounces ingest` subprocesses on what came back."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import run_cli
from tests.support.send import Workspace
from tests.support.smtpd import Received, SMTPServer
from tests.support.smtpd import _Handler as _BaseHandler

VERP = re.compile(r"^bounces\+(\d+)-([a-z2-7]{10})@example\.org$")
POLICY = "550 5.7.1 Message rejected by policy (see https://blocked.example/p)"


class _ByDomain(_BaseHandler):
    async def handle_RCPT(self, srv: Any, session: Any, envelope: Any, address: str, _: Any) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain == "blocked.example":
            return POLICY
        if domain == "gone.example":
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def _workspace(tmp_path: Path, server: SMTPServer) -> Workspace:
    return Workspace(
        tmp_path,
        backend_url=server.url,
        bounce_address="Bounces <bounces@example.org>",
        bounce_limit=1,
    )


def _query(ws: Workspace, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(ws.db_path, timeout=30)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _delivery_of(ws: Workspace, email: str) -> int:
    rows = _query(
        ws,
        "SELECT d.id FROM delivery d JOIN subscriber s ON s.id = d.subscriber_id WHERE s.email = ?",
        email,
    )
    assert len(rows) == 1
    return int(rows[0][0])


def _status(ws: Workspace) -> dict[str, tuple[str, int]]:
    return {
        e: (st, n) for e, st, n in _query(ws, "SELECT email, status, bounce_count FROM subscriber")
    }


def test_policy_blocks_bounce_nobody_dead_mailboxes_do_and_issues_show_says_which(
    tmp_path: Path,
) -> None:
    with SMTPServer() as server:
        server.controller.handler = _ByDomain(server)
        ws = _workspace(tmp_path, server)
        blocked = ws.add_subscribers(12, domain="blocked.example")
        gone = ws.add_subscribers(3, domain="gone.example")
        fine = ws.add_subscribers(5, domain="fine.example")
        r = ws.run("send", "--yes")
        assert r.returncode == 0, r.stdout + r.stderr
        got = server.received()
    assert sorted(m.rcpt_tos[0] for m in got) == sorted(fine)
    for m in got:  # each copy's envelope sender names its own delivery, signed
        match = VERP.match(m.mail_from)
        assert match, m.mail_from
        assert int(match[1]) == _delivery_of(ws, m.rcpt_tos[0])
    assert len({m.mail_from for m in got}) == 5
    for m in got:  # VERP lives in the envelope only: the message itself names no VERP address
        assert b"bounces+" not in m.data
        assert m.message["From"] == "Allotment Notes <news@example.org>"
        assert m.message["To"].addresses[0].addr_spec == m.rcpt_tos[0]
    status = _status(ws)
    assert {e for e, (st, _) in status.items() if st == "bounced"} == set(gone)
    assert all(status[e] == ("active", 0) for e in blocked + fine)

    show = ws.run("issues", "show", "1")
    assert show.returncode == 0, show.stderr
    assert "Bounces by class: hard 3, block 12" in show.stdout
    assert f"blocked: 12 at blocked.example: {POLICY}" in show.stdout
    # 12 blocks within 10 minutes pass block_pause_threshold (10): the domain is paused.
    assert re.search(
        r"paused: blocked\.example until \d\d:\d\d UTC \(12 blocks: 550 5\.7\.1", show.stdout
    )

    doctor = ws.run("doctor")
    assert "blocked: 12 at blocked.example in the last 24 hours" in doctor.stdout
    assert "paused: blocked.example until" in doctor.stdout
    assert "gone.example" not in doctor.stdout  # hard bounces are not blocks


def _dsn(original: Received, *, failed_for: str, to: str | None = None, n: int = 1) -> bytes:
    """A Postfix-shaped DSN returning ``original``, sent to its envelope sender (or ``to``),
    about ``failed_for``: the address the mail was forwarded to, not the subscriber's."""
    to = to or original.mail_from
    head = (
        "Return-Path: <>\n"
        f"Delivered-To: {to}\n"
        "From: MAILER-DAEMON@mx.elsewhere.example (Mail Delivery System)\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        f"To: {to}\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b0"\n'
        f"Message-Id: <dsn.{n}@mx.elsewhere.example>\n\n"
        "--b0\nContent-Type: text/plain\n\n"
        f"<{failed_for}>: 550 5.1.1 <{failed_for}>: Recipient address rejected: User unknown\n\n"
        "--b0\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.elsewhere.example\n\n"
        f"Final-Recipient: rfc822; {failed_for}\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{failed_for}>: User unknown\n\n"
        "--b0\nContent-Type: message/rfc822\n\n"
    )
    body = original.data.replace(b"\r\n", b"\n")
    return head.encode() + body + b"\n--b0--\n"


def _text_bounce(original: Received, *, n: int) -> bytes:
    """A non-standard bounce that names no address at all (only VERP can tie it)."""
    return (
        f"Return-Path: <>\nDelivered-To: {original.mail_from}\nTo: {original.mail_from}\n"
        "From: Mail Delivery Subsystem <postmaster@relay.example>\n"
        f"Subject: Delivery failure\nMessage-Id: <text.{n}@relay.example>\n\n"
        "Your message could not be delivered: the mailbox is unavailable.\n"
    ).encode()


def _ingest(ws: Workspace, data: bytes, *extra: str) -> str:
    r = run_cli(
        "bounces",
        "ingest",
        *extra,
        cwd=ws.root,
        env={"WEEKLY_MAILER_CONFIG": str(ws.config)},
        input=data.decode(),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _tampered(address: str) -> str:
    m = VERP.match(address)
    assert m
    mac = m[2]
    other = ("b" if mac[0] != "b" else "c") + mac[1:]
    return address.replace(f"-{mac}@", f"-{other}@")


def test_a_dsn_to_the_verp_address_of_a_real_send_marks_that_delivery_and_subscriber(
    tmp_path: Path,
) -> None:
    with SMTPServer() as server:
        ws = _workspace(tmp_path, server)
        ann, bob, cat, dan = ws.add_subscribers(4, domain="fine.example")
        r = ws.run("send", "--yes")
        assert r.returncode == 0, r.stdout + r.stderr
        got = {m.rcpt_tos[0]: m for m in server.received()}
    assert set(got) == {ann, bob, cat, dan}
    assert all(VERP.match(m.mail_from) for m in got.values())

    # A tampered mac: ignored, whatever the report says (it names bob's own address).
    forged = _dsn(got[bob], failed_for=bob, to=_tampered(got[bob].mail_from), n=1)
    out = _ingest(ws, forged, "--dry-run")
    assert "forged VERP address bounces+" in out and "ignored, nothing changed" in out
    out = _ingest(ws, forged)
    assert "1 to a forged or unknown VERP address ignored" in out
    # A genuine mac for a delivery that does not exist: ignored too.
    fake = got[bob].mail_from.replace(f"+{_delivery_of(ws, bob)}-", "+999999-")
    out = _ingest(ws, _dsn(got[bob], failed_for=bob, to=fake, n=2))
    assert "1 to a forged or unknown VERP address ignored" in out
    assert _status(ws)[bob] == ("active", 0)
    assert _query(ws, "SELECT count(*) FROM bounce_event WHERE trusted") == [(0,)]

    # The genuine one names a forwarded address nobody subscribed with: ann is bounced.
    dsn = _dsn(got[ann], failed_for="ann.forwarded@elsewhere.example", n=3)
    out = _ingest(ws, dsn, "--dry-run")
    assert f"[VERP delivery {_delivery_of(ws, ann)} ({ann}): hard]" in out
    out = _ingest(ws, dsn)
    assert "1 hard bounce (1 subscriber now bounced)" in out
    assert "VERP: 1 reports tied to their delivery" in out
    # A bounce whose text names nobody: still cat's, through the VERP address alone.
    out = _ingest(ws, _text_bounce(got[cat], n=4))
    assert "1 hard bounce (1 subscriber now bounced)" in out
    status = _status(ws)
    assert status[ann] == ("bounced", 1) and status[cat] == ("bounced", 1)
    assert status[bob] == status[dan] == ("active", 0)
    events = _query(
        ws,
        "SELECT kind, recipient, delivery_id, subscriber_id, reason FROM bounce_event"
        " WHERE trusted ORDER BY id",
    )
    ids = {e: i for e, i in _query(ws, "SELECT email, id FROM subscriber")}
    assert [(k, r, d, s) for k, r, d, s, _ in events] == [
        ("hard", ann, _delivery_of(ws, ann), ids[ann]),
        ("hard", cat, _delivery_of(ws, cat), ids[cat]),
    ]
    assert "(for ann.forwarded@elsewhere.example)" in events[0][4]


def test_a_report_to_the_plain_bounce_address_is_believed_only_quoting_our_message_id(
    tmp_path: Path,
) -> None:
    with SMTPServer() as server:
        ws = _workspace(tmp_path, server)
        ann, bob = ws.add_subscribers(2, domain="fine.example")
        r = ws.run("send", "--yes")
        assert r.returncode == 0, r.stdout + r.stderr
        got = {m.rcpt_tos[0]: m for m in server.received()}
    plain = "bounces@example.org"
    # A stranger's DSN naming ann, without VERP and without the original message: nobody.
    whole = _dsn(got[ann], failed_for=ann, to=plain, n=1)
    bare = whole.split(b"--b0\nContent-Type: message/rfc822")[0] + b"--b0--\n"
    dry = _ingest(ws, bare, "--dry-run")
    assert "untrusted: tied to no message we sent, nobody changed" in dry
    assert "Untrusted: 1 report tied to no message" in dry
    out = _ingest(ws, bare)
    assert "Untrusted: 1 report tied to no message" in out
    assert _status(ws)[ann] == ("active", 0)
    # The real DSN quotes ann's copy (its Message-ID, signed for ann): ann is bounced.
    out = _ingest(ws, whole.replace(b"<dsn.1@", b"<dsn.2@"))
    assert "Untrusted" not in out
    assert _status(ws)[ann] == ("bounced", 1) and _status(ws)[bob] == ("active", 0)
