"""The rules that decide when "no such user" means a missing mailbox (issue #20), each on a
report written here: words alone, with no status beyond 5.0.0, are a missing mailbox only when
the report shows the refusal answered RCPT TO; a domain, a directory lookup, a host that takes no
mail (RFC 7504/7505) and a bad-mailbox status the sender gave up on are hard by themselves."""

from __future__ import annotations

import pytest

from tests.bounces.test_report_shapes import _dsn as shaped_dsn
from weekly_mailer.bounces.classify import Kind, classify, rests_on_words
from weekly_mailer.bounces.report_reader import parse_report
from weekly_mailer.bounces.report_text import command_of, names_recipient

ORIGINAL = b"From: news@example.org\r\nTo: ann@example.net\r\nSubject: Issue 7\r\n\r\nHi\r\n"


def _kinds(data: bytes) -> list[tuple[str, str]]:
    return [(f.kind.value, f.recipient) for f in parse_report(data).findings]


def _dsn(fields: bytes, human: bytes = b"Your message could not be delivered.\r\n") -> bytes:
    return shaped_dsn(fields, human, ORIGINAL)


def _failed(rcpt: bytes, status: bytes, diagnostic: bytes, action: bytes = b"failed") -> bytes:
    return (
        b"Final-Recipient: rfc822; " + rcpt + b"\r\nAction: " + action + b"\r\nStatus: "
        + status + b"\r\nDiagnostic-Code: smtp; " + diagnostic + b"\r\n"
    )  # fmt: skip


def _text_bounce(body: bytes) -> bytes:
    return (
        b"Return-Path: <>\r\nFrom: Mail Delivery System <MAILER-DAEMON@relay.example.org>\r\n"
        b"To: bounces@example.org\r\nSubject: Mail delivery failed\r\n\r\n"
        b"A message that you sent could not be delivered to one or more of its\r\n"
        b"recipients. This is a permanent error. The following address failed:\r\n\r\n"
        + body + b"\r\n\r\n------ This is a copy of the message, including all the headers.\r\n"
        + ORIGINAL
    )  # fmt: skip


# -- words alone -------------------------------------------------------------------------------


def test_user_unknown_words_with_a_generic_status_and_no_command_are_a_filter() -> None:
    """A recipient's filter answers "User unknown" after DATA for a sender it refuses; with no
    status beyond 5.0.0 and nothing saying which command it answered, that is what it may be."""
    plain = _failed(b"ann@example.net", b"5.0.0", b"550 No such person at this address")
    assert _kinds(_dsn(plain)) == [("block", "ann@example.net")]
    no_status = b"Final-Recipient: rfc822; ann@example.net\r\nAction: failed\r\n"
    said = b"<ann@example.net>: host mx.example.net said: 550 User unknown\r\n"
    assert _kinds(_dsn(no_status, said)) == [("block", "ann@example.net")]


def test_the_same_words_in_reply_to_rcpt_to_are_a_missing_mailbox() -> None:
    at_rcpt = _failed(
        b"ann@example.net", b"5.0.0", b"550 No such person at this address", b"failed"
    )
    folded = (
        b"<ann@example.net>: host mx.example.net[192.0.2.7] said: 550 No such person\r\n"
        b"    at this address (in reply to\r\n    RCPT TO command)\r\n"
    )
    assert _kinds(_dsn(at_rcpt, folded)) == [("hard", "ann@example.net")]
    transcript = _text_bounce(
        b"  ann@example.net\r\n    >>> RCPT TO:<ann@example.net>\r\n    <<< 550 User unknown"
    )
    assert _kinds(transcript) == [("hard", "ann@example.net")]


@pytest.mark.parametrize(
    "diagnostic",
    [
        b"550 <ann@example.net>: User unknown",
        b"550 ann@example.net... No such user",
        b"550 5.0.0 <ann@example.net>... Unknown user",
        b"550 Unknown recipient ann@example.net",
        b"554 delivery error: This user doesn't have an example.net account (ann@example.net) [3]",
    ],
)
def test_a_reply_naming_its_recipient_answered_rcpt_to(diagnostic: bytes) -> None:
    """A reply to RCPT TO is about one recipient and often names it; a reply to the message
    after DATA is about every recipient at once."""
    assert _kinds(_dsn(_failed(b"ann@example.net", b"5.0.0", diagnostic))) == [
        ("hard", "ann@example.net")
    ]


def test_a_reply_naming_its_recipient_after_data_is_still_a_filter() -> None:
    said = b"<ann@example.net>: host mx.example.net said: 550 <ann@example.net>: User\r\n"
    dsn = _dsn(
        _failed(b"ann@example.net", b"5.0.0", b"550 <ann@example.net>: User unknown"),
        said + b"    unknown (in reply to end of DATA command)\r\n",
    )
    assert _kinds(dsn) == [("block", "ann@example.net")]


def test_a_text_bounce_whose_reply_names_the_recipient_or_not() -> None:
    named = _text_bounce(b"  bob@example.net\r\n    550 bob@example.net... No such user")
    assert _kinds(named) == [("hard", "bob@example.net")]
    unnamed = _text_bounce(b"  bob@example.net\r\n    550 No such user here")
    assert _kinds(unnamed) == [("block", "bob@example.net")]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("550 <ann@example.net>: User unknown", True),
        ("550-5.1.1 ann@example.net... User unknown", True),
        ("553 Invalid recipient ann@example.net (Mode: strict)", True),
        ("550 User unknown", False),
        ("<ann@example.net>: 550 User unknown", False),  # the report's framing, not the reply
        ("550 <ann@example.net.other.example>: User unknown", False),  # another address
        ("550 <joann@example.net>: User unknown", False),
    ],
)
def test_names_recipient(text: str, named: bool) -> None:
    assert names_recipient(text, "ann@example.net") is named


def test_which_verdicts_rest_on_words_alone() -> None:
    assert rests_on_words(classify("5.0.0", None, "550 User unknown"))
    assert rests_on_words(classify(None, None, "Recipient not found"))
    assert not rests_on_words(classify("5.1.1", None, "550 5.1.1 User unknown"))  # the status
    assert not rests_on_words(classify(None, None, "Host or domain name not found"))
    assert not rests_on_words(classify(None, 550, ""))  # a bare 550 has no words to doubt
    assert not rests_on_words(classify(None, None, "550 message rejected as spam"))


# -- hard by themselves ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "diagnostic",
    [
        b"550 Domain does not exist",
        b"User Ann Example (ann@example.net) not listed in the directory",
        b"MSEXCH:IMS:EXAMPLE:NET:MAIL01 0 (000C05A6) Unknown Recipient",
    ],
)
def test_a_domain_or_a_directory_lookup_is_hard_whatever_the_command(diagnostic: bytes) -> None:
    """What a domain's absence or a directory's lookup says is no filter's wording."""
    assert _kinds(_dsn(_failed(b"ann@example.net", b"5.0.0", diagnostic))) == [
        ("hard", "ann@example.net")
    ]


@pytest.mark.parametrize(
    ("status", "code", "text", "kind"),
    [
        ("5.7.27", 550, "550 Host does not accept mail", Kind.HARD),  # RFC 7505 null MX
        (None, 556, "556 5.1.10 Domain does not accept mail", Kind.HARD),  # RFC 7504
        ("5.3.2", 521, "521 5.3.2 System not accepting network messages", Kind.HARD),
        ("5.7.1", 521, "521 5.7.1 Service unavailable; client blocked using a list", Kind.BLOCK),
        ("5.7.27", 550, "550 5.7.27 Sender domain does not accept mail", Kind.BLOCK),  # us
    ],
)
def test_a_host_that_takes_no_mail_is_hard(
    status: str | None, code: int, text: str, kind: Kind
) -> None:
    assert classify(status, code, text).kind is kind


def test_a_bad_mailbox_status_the_sender_gave_up_on_is_hard() -> None:
    """``Action: failed`` with a 4.x.x status: the MTA stopped retrying. A receiver that said
    "4.1.1 user unknown" to every retry said the mailbox is missing; a DNS error with a generic
    4.0.0 may have been the sender's own resolver, and a full mailbox is no missing one."""
    unknown = b"450 4.1.1 <ann@example.net>: Recipient address rejected: User unknown"
    assert _kinds(_dsn(_failed(b"ann@example.net", b"4.1.1", unknown))) == [
        ("hard", "ann@example.net")
    ]
    dns = b"DNS Error: lookup of example.net responded NXDOMAIN: Domain name not found"
    assert _kinds(_dsn(_failed(b"ann@example.net", b"4.0.0", dns))) == [
        ("expired", "ann@example.net")
    ]
    full = b"452 4.2.2 Mailbox full"
    assert _kinds(_dsn(_failed(b"ann@example.net", b"4.2.2", full))) == [
        ("expired", "ann@example.net")
    ]
    still_trying = _failed(b"ann@example.net", b"4.1.1", unknown, action=b"delayed")
    assert _kinds(_dsn(still_trying)) == [("soft", "ann@example.net")]
    assert classify("4.1.1", None, unknown.decode()).kind is Kind.SOFT  # not given up
    assert classify("4.1.1", None, unknown.decode(), gave_up=True).kind is Kind.HARD


# -- reading the report ------------------------------------------------------------------------


def test_a_dsn_block_naming_two_recipients_is_read_as_two() -> None:
    """Some MTAs leave out the blank line between two recipients' fields (RFC 3464 wants
    one): each recipient keeps its own status."""
    fields = (
        _failed(b"ann@example.net", b"5.2.2", b"552 5.2.2 <ann@example.net>... Mailbox full")
        + b"Original-Recipient: rfc822; bob@example.net\r\n"
        + _failed(b"bob@example.net", b"5.1.1", b"550 5.1.1 <bob@example.net>... User unknown")
    )
    assert _kinds(_dsn(fields)) == [("soft", "ann@example.net"), ("hard", "bob@example.net")]
    final_first = (
        _failed(b"ann@example.net", b"5.2.2", b"552 5.2.2 Mailbox full")
        + b"Final-Recipient: rfc822; bob@example.net\r\n"
        + b"Original-Recipient: rfc822; bob@example.net\r\n"
        + b"Action: failed\r\nStatus: 5.1.1\r\n"
    )
    blocks = parse_report(_dsn(final_first)).findings
    assert [(f.kind.value, f.recipient, f.status) for f in blocks] == [
        ("soft", "ann@example.net", "5.2.2"),
        ("hard", "bob@example.net", "5.1.1"),
    ]


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("said: 550 No such user (in reply to\n    RCPT TO command)", "RCPT"),
        ("said: 550 No such user (in reply to end of\n    DATA command)", "DATA"),
        ("SMTP error from remote mail server after\n  MAIL FROM:<news@example.org>", "MAIL"),
    ],
)
def test_a_folded_command_is_read(text: str, command: str) -> None:
    assert command_of(text) == command
