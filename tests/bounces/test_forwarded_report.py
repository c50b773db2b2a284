"""A reader's own abuse report: "Fw:" of the copy they got as "Undisclosed Recipients", mailed
by them. Its sender is the one complainant it can mean (report_parts.forwarded_by), believed as
any report is: with bounce_trust = "any" only; with "signed" our signature still decides."""

from __future__ import annotations

import pytest

from tests.bounces.test_trust import _apply, _readers
from tests.issues.test_health import LAST_WEEK
from weekly_mailer.bounces.intake import IngestSummary, parse_report
from weekly_mailer.compose import make_message_id
from weekly_mailer.store.db import Database


def _forward(
    sender: str,
    *,
    subject: str = "Fw: This week in the valley",
    to: str = "Undisclosed Recipients:;",
    message_id: str = "<copy.1@example.org>",
    original_from: str = "news@example.org",
) -> bytes:
    """An ARF report a reader's mail program made of a message they got, mailed by them."""
    return (
        f"From: {sender}\r\nTo: abuse@isp.example.net\r\nSubject: {subject}\r\n"
        "Message-ID: <fw.1@reader.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n'
        "\r\n--F\r\nContent-Type: text/plain\r\n\r\nI never asked for this.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: Reader-ARF/1.0\r\nVersion: 1\r\n"
        "\r\n--F\r\nContent-Type: message/rfc822\r\n\r\n"
        f"From: {original_from}\r\nTo: {to}\r\nSubject: This week in the valley\r\n"
        f"Message-ID: {message_id}\r\n\r\nHello\r\n"
        "\r\n--F--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("subject", "presumed"),
    [
        ("Fw: This week in the valley", True),
        ("FWD: fw:  This week   in the valley", True),  # repeated, spaced, any case
        ("WG: This week in the valley", True),  # German
        ("TR: This week in the valley", True),  # French
        ("Abuse Report", False),  # a feedback loop's own subject
        ("Fw: Another week", False),  # not the message it returns
        ("This week in the valley", False),  # no forward
    ],
)
def test_only_a_forward_of_the_returned_message_presumes_its_sender(
    subject: str, presumed: bool
) -> None:
    report = parse_report(_forward("Reader <Ann@Reader.example.net>", subject=subject))
    assert report.kind == "feedback"
    assert report.forwarded_by == ("ann@reader.example.net" if presumed else "")
    assert [f.recipient for f in report.findings] == [""]  # the finding itself names nobody


def test_a_named_recipient_or_the_senders_own_forward_presumes_nobody() -> None:
    named = parse_report(_forward("ann@reader.example.net", to="Bea <bea@reader.example.net>"))
    assert named.forwarded_by == ""
    assert named.complained == ["bea@reader.example.net"]
    own = parse_report(_forward("news@example.org"))
    assert own.forwarded_by == ""


def test_believing_any_report_the_forwarding_reader_complains(trust_db: Database) -> None:
    settings = trust_db.settings
    with trust_db.sessions.begin() as session:
        _issue_id, subs, _rows = _readers(session, 3)
        summary = IngestSummary()
        note = _apply(session, _forward(subs[1].email), settings, summary, trust="any")
        assert [s.status for s in subs] == ["active", "complained", "active"]
        assert summary.complaints == 1
        assert note == f"forwarded by {subs[1].email_key}: presumed its complainant"


def test_with_signed_trust_an_untied_forward_changes_nobody(trust_db: Database) -> None:
    settings = trust_db.settings
    with trust_db.sessions.begin() as session:
        _issue_id, subs, _rows = _readers(session, 3)
        summary = IngestSummary()
        _apply(session, _forward(subs[1].email), settings, summary)
        assert [s.status for s in subs] == ["active", "active", "active"]
        assert summary.complaints == 0


def test_with_signed_trust_our_message_id_decides_not_the_forwarder(trust_db: Database) -> None:
    """A forward from one reader of another reader's copy (our signed Message-ID in it)."""
    settings = trust_db.settings
    with trust_db.sessions.begin() as session:
        _issue_id, subs, _rows = _readers(session, 3)
        ours = make_message_id(settings, LAST_WEEK, subs[2].id)
        summary = IngestSummary()
        _apply(session, _forward(subs[0].email, message_id=ours), settings, summary)
        assert [s.status for s in subs] == ["active", "active", "complained"]
