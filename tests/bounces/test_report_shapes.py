"""Reports in the shapes real providers send them: each message built here as those providers
build it, read by parse_report."""

from __future__ import annotations

import json

from weekly_mailer.bounces.report_reader import parse_report
from weekly_mailer.store.bounce_models import BounceKind


def _kinds(data: bytes) -> list[tuple[str, str]]:
    return [(f.kind.value, f.recipient) for f in parse_report(data).findings]


ORIGINAL = b"From: news@example.org\r\nTo: ann@example.net\r\nSubject: Issue 12\r\n\r\nHello\r\n"


def _arf(report_type: str, feedback_ctype: str, fields: bytes) -> bytes:
    return (
        b"From: fbl@isp.example\r\nTo: fbl@example.org\r\nSubject: Abuse report\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/report; " + report_type + b'boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        b"--b1\r\nContent-Type: " + feedback_ctype + b"\r\n\r\n" + fields + b"\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n\r\n" + ORIGINAL + b"--b1--\r\n"
    )


def test_arf_with_or_without_report_type_and_as_text() -> None:
    fields = b"Feedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n"
    for report_type in (b'report-type="feedback-report"; ', b""):
        for ctype in (b"message/feedback-report", b"text/plain"):
            data = _arf(report_type, ctype, fields)
            assert _kinds(data) == [("complaint", "ann@example.net")], (report_type, ctype)


def test_arf_types_and_comments() -> None:
    opt_out = _arf(b"", b"message/feedback-report", b"Feedback-Type: opt-out (list)\r\n")
    assert _kinds(opt_out) == [("opt-out", "ann@example.net")]
    auth = _arf(b"", b"message/feedback-report", b"Feedback-Type: auth-failure\r\n")
    assert _kinds(auth) == [("feedback", "ann@example.net")]
    untyped = _arf(b"", b"message/feedback-report", b"User-Agent: FBL/1.0\r\nVersion: 1\r\n")
    assert _kinds(untyped) == [("complaint", "ann@example.net")]  # RFC 5965: abuse by default


def test_a_redacted_arf_names_nobody_but_keeps_its_verdict_for_a_tied_delivery() -> None:
    data = _arf(b"", b"message/feedback-report", b"Feedback-Type: abuse\r\n").replace(
        b"To: ann@example.net", b"To: <Undisclosed Recipients>"
    )
    report = parse_report(data)
    assert report.kind == "feedback"
    assert [(f.kind, f.recipient) for f in report.findings] == [(BounceKind.COMPLAINT, "")]


def _ses(message: dict[str, object], *, wrapped: bool) -> bytes:
    body = json.dumps(message, separators=(",", ":"))
    if wrapped:
        body = json.dumps({"Type": "Notification", "Message": body})
    folded = "!\r\n ".join(body[i : i + 200] for i in range(0, len(body), 200))
    return (
        "From: no-reply@sns.amazonaws.com\r\nTo: ops@example.org\r\n"
        "Subject: AWS Notification Message\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
        f"{folded}\r\n\r\n--\r\nIf you wish to stop receiving notifications…\r\n"
    ).encode()


def test_ses_notifications_by_mail_bare_or_in_the_sns_envelope() -> None:
    bounce = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "Ann@Example.net",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                },  # fmt: skip
            ],
        },
    }
    transient = json.loads(json.dumps(bounce))
    transient["bounce"]["bounceType"] = "Transient"
    complaint = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "bob@example.net"}],
            "complaintFeedbackType": "abuse",
        },
    }
    for wrapped in (False, True):
        assert _kinds(_ses(bounce, wrapped=wrapped)) == [("hard", "ann@example.net")]
        assert _kinds(_ses(transient, wrapped=wrapped)) == [("soft", "ann@example.net")]
        assert _kinds(_ses(complaint, wrapped=wrapped)) == [("complaint", "bob@example.net")]
    delivery = {"notificationType": "Delivery", "delivery": {"recipients": ["ann@example.net"]}}
    assert parse_report(_ses(delivery, wrapped=False)).findings == []


def test_microsoft_jmrp() -> None:
    data = (
        b"From: staff@hotmail.com\r\nTo: abuse-report@example.org\r\n"
        b"Subject: complaint about message from 192.0.2.1\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b2"\r\n\r\n'
        b"--b2\r\nContent-Type: message/rfc822\r\n\r\n"
        b"X-HmXmrOriginalRecipient: ann@outlook.example\r\n" + ORIGINAL + b"--b2--\r\n"
    )
    assert _kinds(data) == [("complaint", "ann@outlook.example")]


def test_apple_mail_unsubscribe_and_a_vacation_reply_sent_like_a_bounce() -> None:
    apple = (
        b"From: ann@icloud.example\r\nTo: unsubscribe-1234@example.org\r\nSubject: unsubscribe\r\n"
        b"Auto-Submitted: auto-replied\r\nX-Apple-Unsubscribe: true\r\n\r\n"
        b"Apple Mail sent this email to unsubscribe from the message.\r\n"
    )
    report = parse_report(apple)
    assert (report.kind, report.unsubscribed) == ("unsubscribe", ["ann@icloud.example"])
    vacation = (
        b"Return-Path: <>\r\nFrom: Bob <bob@example.net>\r\nTo: news@example.org\r\n"
        b"Subject: Automatic reply: Issue 12\r\n\r\nI am away until Monday; 550 thanks.\r\n"
    )
    assert (parse_report(vacation).kind, parse_report(vacation).findings) == ("auto-reply", [])


def _dsn(
    per_recipient: bytes,
    human: bytes = b"The message could not be delivered.\r\n",
    original: bytes | None = None,
) -> bytes:
    return (
        b"From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@example.org\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b3"\r\n\r\n'
        b"--b3\r\nContent-Type: text/plain\r\n\r\n" + human + b"\r\n"
        b"--b3\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.org\r\n\r\n" + per_recipient + b"\r\n"
        b"--b3\r\nContent-Type: message/rfc822\r\n\r\n" + (original or ORIGINAL) + b"--b3--\r\n"
    )


def test_dsn_fields_with_comments_and_a_generic_status_read_with_the_human_part() -> None:
    commented = _dsn(
        b"Final-Recipient: rfc822; ann@example.net (Ann)\r\nAction: failed (permanent)\r\n"
        b"Status: 5.1.1 (bad destination mailbox address)\r\n"
    )
    assert _kinds(commented) == [("hard", "ann@example.net")]
    generic = b"Final-Recipient: rfc822; ann@example.net\r\nAction: failed\r\nStatus: 5.0.0\r\n"
    said = b"<ann@example.net>: host mx.example.net said: 550 No such user here\r\n"
    assert _kinds(_dsn(generic, said + b"    (in reply to RCPT TO command)\r\n")) == [
        ("hard", "ann@example.net")
    ]
    assert _kinds(_dsn(generic, said + b"    (in reply to end of DATA command)\r\n")) == [
        ("block", "ann@example.net")  # accepted at RCPT: a filter refused the message
    ]


def test_a_dsn_whose_recipient_field_is_unreadable_is_read_from_its_text() -> None:
    data = _dsn(
        b"Final-Recipient: RFC822; @mx.example.net\r\nAction: failed\r\nStatus: 5.1.2\r\n",
        b"----- The following addresses had permanent fatal errors -----\r\n"
        b"<ann@example.net>\r\n    (reason: 550 Host unknown)\r\n",
    )
    assert _kinds(data) == [("hard", "ann@example.net")]


def _status_report(human: bytes, *blocks: bytes) -> bytes:
    status = b"\r\n".join(blocks)
    return (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
        b"To: news@example.org\r\nSubject: Returned mail\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="d1"\r\n\r\n'
        b"--d1\r\nContent-Type: text/plain\r\n\r\n" + human + b"\r\n"
        b"--d1\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.org\r\n\r\n" + status + b"\r\n"
        b"--d1\r\nContent-Type: message/rfc822\r\n\r\n" + ORIGINAL + b"--d1--\r\n"
    )


def _recipient(rcpt: bytes, status: bytes, diagnostic: bytes, *extra: bytes) -> bytes:
    return (
        b"Final-Recipient: rfc822; " + rcpt + b"\r\nAction: failed\r\nStatus: " + status
        + b"\r\nDiagnostic-Code: smtp; " + diagnostic + b"\r\n" + b"".join(extra)
    )  # fmt: skip


def test_the_report_saying_its_one_recipient_is_disabled_or_full_beats_user_unknown() -> None:
    """The reporting MTA's own words about its one failed recipient (a mailbox state) are more
    specific than a remote "user unknown", which many servers answer for any refusal."""
    at_rcpt = b"550 user unknown (in reply to RCPT TO command)"
    block = _recipient(b"ann@example.net", b"5.0.0", at_rcpt)
    disabled = _status_report(b"The recipient's account is disabled.", block)
    assert _kinds(disabled) == [("soft", "ann@example.net")]
    full = _status_report(b"Your message was rejected:\r\nNot enough disk space", block)
    assert _kinds(full) == [("soft", "ann@example.net")]
    plain = _status_report(b"Your message could not be delivered.", block)
    assert _kinds(plain) == [("hard", "ann@example.net")]
    # Two failed recipients: the words cannot be tied to either.
    other = _recipient(b"bob@example.net", b"5.0.0", at_rcpt)
    both = _status_report(b"One mailbox is full.", block, other)
    assert _kinds(both) == [("hard", "ann@example.net"), ("hard", "bob@example.net")]


def test_powermta_says_how_it_read_the_reply() -> None:
    bad = _recipient(
        b"ann@example.net",
        b"5.2.1 (mailbox disabled, not accepting messages)",
        b"550 5.2.1 <ann@example.net>... User Unknown",
        b"X-PowerMTA-BounceCategory: bad-mailbox\r\n",
    )
    assert _kinds(_status_report(b"delivery failed; will not continue trying", bad)) == [
        ("hard", "ann@example.net")
    ]
    inactive = _recipient(
        b"bob@example.net",
        b"5.1.1",
        b"550 5.1.1 <bob@example.net>... account inactive, user unknown",
        b"X-PowerMTA-BounceCategory: inactive-mailbox\r\n",
    )
    assert _kinds(_status_report(b"delivery failed", inactive)) == [("soft", "bob@example.net")]
    no_opinion = _recipient(
        b"cy@example.net", b"5.1.1", b"550 5.1.1 user unknown",
        b"X-PowerMTA-BounceCategory: other\r\n",
    )  # fmt: skip
    assert _kinds(_status_report(b"delivery failed", no_opinion)) == [("hard", "cy@example.net")]
