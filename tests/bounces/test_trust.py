"""Forgery: a report changes a reader only when tied to a message we sent them. Every test runs
on a SQLite file and on the real PostgreSQL (skipped where it is absent, required in CI)."""

from __future__ import annotations

from sqlalchemy import select

from tests.bounces.test_about import NOW, _dsn
from tests.issues.test_health import LAST_WEEK, arf_quoting, sent_issue
from weekly_mailer import issues
from weekly_mailer.bounces.intake import IngestSummary, apply_report, parse_report, verp_reader
from weekly_mailer.compose import make_message_id
from weekly_mailer.config import Settings
from weekly_mailer.store.bounce_models import BounceEvent
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery, Subscriber


def _readers(session, n: int) -> tuple[int, list[Subscriber], list[int]]:  # type: ignore[no-untyped-def]
    issue_id, rows = sent_issue(session, delivered=n)
    subs = [session.get(Subscriber, session.get(Delivery, r).subscriber_id) for r in rows]
    return issue_id, subs, rows


def _apply(session, data: bytes, settings: Settings, summary: IngestSummary, **kw):  # type: ignore[no-untyped-def]
    return apply_report(
        session, parse_report(data), bounce_limit=1, summary=summary, now=NOW,
        secret_key=settings.secret_key, verp=verp_reader(settings), **kw,
    )  # fmt: skip


def _tamper(signed: str, at: int) -> str:
    """``signed`` with one character of its signature changed."""
    return signed[:at] + ("a" if signed[at] != "a" else "b") + signed[at + 1 :]


def _to_verp(data: bytes, address: str) -> bytes:
    """A DSN delivered to ``address`` (as the MTA's Delivered-To says)."""
    return f"Delivered-To: {address}\n".encode() + data


def _redacted_arf(n: int, *, return_path: str, message_id: str = "<x.1@example.org>") -> bytes:
    """An ARF report naming no recipient (the provider redacted it), mailed to the address
    registered with its feedback loop; the returned message keeps its Return-Path."""
    return (
        "From: fbl@isp.example.net\r\nTo: fbl@example.org\r\n"
        f"Message-ID: <redacted.{n}@isp.example.net>\r\nSubject: Complaint\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="R"\r\n'
        "\r\n--R\r\nContent-Type: text/plain\r\n\r\nA complaint about a message.\r\n"
        "--R\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: ISP-FBL/2.0\r\nVersion: 1\r\n"
        "\r\n--R\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Return-Path: <{return_path}>\r\nFrom: news@example.org\r\nTo: redacted\r\n"
        f"Subject: This week\r\nMessage-ID: {message_id}\r\n\r\nHello\r\n"
        "\r\n--R--\r\n"
    ).encode()


def test_a_dsn_or_arf_without_verp_or_our_message_id_changes_nobody(trust_db: Database) -> None:
    settings = trust_db.settings
    with trust_db.sessions.begin() as session:
        _issue_id, subs, _rows = _readers(session, 3)
        summary = IngestSummary()
        note = _apply(session, _dsn(subs[0].email), settings, summary)
        _apply(
            session, arf_quoting("<stranger@elsewhere.example>", subs[1].email), settings, summary
        )
        assert [s.status for s in subs] == ["active", "active", "active"]
        assert summary.untrusted == 2 and summary.trust_line().startswith("Untrusted: 2 reports")
        assert note.startswith("untrusted")
        assert session.scalars(select(BounceEvent.trusted)).all() == [False, False]
        # bounce_trust = "any": today's behaviour, the same reports are believed.
        _apply(session, _dsn(subs[2].email, n=9), settings, IngestSummary(), trust="any")
        assert subs[2].status == "bounced"


def test_own_message_id_in_reports_naming_others_raises_no_rate_and_holds_nothing(
    trust_db: Database,
) -> None:
    settings = trust_db.settings
    with trust_db.sessions.begin() as session:
        issue_id, subs, _rows = _readers(session, 3)
        mine = make_message_id(settings, LAST_WEEK, subs[0].id)
        summary = IngestSummary()
        for n, other in enumerate((subs[1].email, subs[2].email, "made.up@example.org")):
            data = arf_quoting(mine, other).replace(b"report.1", f"report.{n}".encode())
            _apply(session, data, settings, summary)
        assert [s.status for s in subs] == ["active", "active", "active"]
        assert issues.issue_health(session, issue_id).complaints == 0
        assert issues.guard(session, settings, now=NOW, issue_ids={issue_id}) == []
        assert summary.untrusted == 3


def test_a_tampered_message_id_changes_nobody_and_the_genuine_one_complains(
    trust_db: Database,
) -> None:
    settings = trust_db.settings
    with trust_db.sessions.begin() as session:
        issue_id, subs, _rows = _readers(session, 3)
        real = make_message_id(settings, LAST_WEEK, subs[0].id)
        tampered = real[:-20] + ("0" if real[-20] != "0" else "1") + real[-19:]
        summary = IngestSummary()
        _apply(session, arf_quoting(tampered, subs[0].email), settings, summary)
        assert subs[0].status == "active" and summary.untrusted == 1
        data = arf_quoting(real, subs[0].email).replace(b"report.1", b"report.2")
        _apply(session, data, settings, summary)
        assert subs[0].status == "complained"
        assert issues.issue_health(session, issue_id).complaints == 1


def test_a_tampered_verp_address_changes_nobody_and_the_genuine_one_bounces(
    trust_db: Database,
) -> None:
    settings = trust_db.settings
    codec = verp_reader(settings)
    assert codec is not None
    with trust_db.sessions.begin() as session:
        issue_id, subs, rows = _readers(session, 3)
        genuine = codec.address(rows[0])
        forged = _tamper(genuine, genuine.index("@") - 1)
        summary = IngestSummary()
        note = _apply(session, _to_verp(_dsn(subs[0].email, n=1), forged), settings, summary)
        assert note.startswith("forged VERP address") and summary.verp_ignored == 1
        # Another delivery's id with this one's signature: forged too.
        swapped = codec.address(rows[1]).replace(codec.mac(rows[1]), codec.mac(rows[0]))
        _apply(session, _to_verp(_dsn(subs[1].email, n=2), swapped), settings, summary)
        assert [s.status for s in subs] == ["active", "active", "active"]
        assert issues.issue_health(session, issue_id).hard_bounces == 0
        assert session.scalars(select(BounceEvent.trusted)).all() == [False, False]
        _apply(session, _to_verp(_dsn(subs[0].email, n=3), genuine), settings, summary)
        assert [s.status for s in subs] == ["bounced", "active", "active"]


def test_a_redacted_complaint_is_its_readers_only_through_a_genuine_return_path(
    trust_db: Database,
) -> None:
    """Feedback loops redact the complainant and mail the report to the address registered
    with them: the returned message's Return-Path (our VERP address) ties it, when genuine."""
    settings = trust_db.settings
    codec = verp_reader(settings)
    assert codec is not None
    with trust_db.sessions.begin() as session:
        issue_id, subs, rows = _readers(session, 3)
        genuine = codec.address(rows[1])
        forged = _tamper(genuine, genuine.index("@") - 1)
        summary = IngestSummary()
        _apply(session, _redacted_arf(1, return_path=forged), settings, summary)
        _apply(session, _redacted_arf(2, return_path="bounces@example.org"), settings, summary)
        _apply(session, _redacted_arf(3, return_path="x@elsewhere.example"), settings, summary,
               trust="any")  # fmt: skip
        assert [s.status for s in subs] == ["active", "active", "active"]
        assert issues.issue_health(session, issue_id).complaints == 0
        _apply(session, _redacted_arf(4, return_path=genuine), settings, summary)
        assert [s.status for s in subs] == ["active", "complained", "active"]
        assert issues.issue_health(session, issue_id).complaints == 1
        # Our signed Message-ID in the returned message ties a redacted report as well.
        mine = make_message_id(settings, LAST_WEEK, subs[2].id)
        data = _redacted_arf(5, return_path="bounces@example.org", message_id=mine)
        _apply(session, data, settings, summary)
        assert [s.status for s in subs] == ["active", "complained", "complained"]
