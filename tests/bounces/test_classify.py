"""The classifier's table: text beats a bare code; only a missing mailbox or domain is hard."""

from __future__ import annotations

import pytest

from weekly_mailer.bounces.classify import (
    Kind,
    classify,
    find_code,
    find_status,
    mailbox_state,
    uncomment,
)
from weekly_mailer.bounces.report_text import command_of

CASES = [
    # (status, code, text, expected kind)
    ("5.1.1", 550, "550 5.1.1 user unknown", Kind.HARD),
    (None, None, "550 5.1.1 <a@x.example>: Recipient address rejected: User unknown", Kind.HARD),
    (None, 550, "Requested action not taken: mailbox unavailable", Kind.HARD),
    (None, None, "Sorry, no mailbox here by that name. (#5.1.1)", Kind.HARD),
    ("5.4.4", None, "Host or domain name not found. Name service error", Kind.HARD),
    ("5.1.10", 550, "RESOLVER.ADR.RecipientNotFound; Recipient not found", Kind.HARD),
    ("5.4.1", 550, "Recipient address rejected: Access denied. AS(201806281)", Kind.HARD),
    # RFC 3463 X.2.1: the mailbox exists but is disabled (suspended, inactive): not hard.
    ("5.2.1", 550, "The email account that you tried to reach is disabled.", Kind.SOFT),
    ("5.1.6", 551, "User has moved, no forwarding address", Kind.HARD),
    ("5.1.1", None, "", Kind.HARD),  # a bare status
    (None, 550, "", Kind.HARD),  # a bare 550
    ("5.2.2", 552, "552 5.2.2 mailbox full", Kind.SOFT),
    (None, None, "552-5.2.2 The email account that you tried to reach is over quota", Kind.SOFT),
    (None, None, "Mailbox quota exceeded", Kind.SOFT),
    (None, 452, "452 4.2.2 Insufficient system storage", Kind.SOFT),
    ("4.1.1", 450, "450 4.1.1 user unknown, try again", Kind.SOFT),  # transient: never hard
    (None, 421, "421 Service not available", Kind.SOFT),
    (None, 550, "550 blocked using zen.spamhaus.org", Kind.BLOCK),
    ("5.0.0", 550, "rejected because 192.0.2.1 is in a black list at b.barracuda", Kind.BLOCK),
    ("5.7.1", 554, "554 5.7.1 Service unavailable", Kind.BLOCK),
    ("5.7.1", None, "", Kind.BLOCK),  # 5.7.x is always a block
    (
        None,
        None,
        "550-5.7.26 Unauthenticated email is not accepted due to DMARC policy",
        Kind.BLOCK,
    ),
    (None, None, "550 5.7.23 rejected because of Sender Policy Framework violation", Kind.BLOCK),
    (None, None, "550 5.7.1 Too many messages from your IP, rate limit exceeded", Kind.BLOCK),
    ("4.7.0", 421, "[TSS04] temporarily deferred due to user complaints", Kind.BLOCK),
    (None, 554, "554 Message rejected due to content restrictions", Kind.BLOCK),
    ("5.4.7", None, "", Kind.EXPIRED),
    ("4.4.7", None, "", Kind.EXPIRED),
    (None, None, "550 5.4.7 delivery time expired", Kind.EXPIRED),
    (None, None, "retry timeout exceeded", Kind.EXPIRED),
    (
        None,
        None,
        "I'm not going to try again; this message has been in the queue too long.",
        Kind.EXPIRED,
    ),
    (None, None, "", Kind.UNKNOWN),
    ("5.5.0", 554, "554 5.5.0 transaction failed", Kind.UNKNOWN),
    (None, None, "something odd happened", Kind.UNKNOWN),
]


@pytest.mark.parametrize(("status", "code", "text", "kind"), CASES)
def test_classify_table(status: str | None, code: int | None, text: str, kind: Kind) -> None:
    assert classify(status, code, text).kind is kind


def test_classification_carries_status_code_and_one_line_reason() -> None:
    c = classify(
        None, None, "550-5.1.1 The email account that you tried to reach\n does not exist."
    )
    assert (c.kind, c.status, c.code) == (Kind.HARD, "5.1.1", 550)
    assert c.reason == "550-5.1.1 The email account that you tried to reach does not exist."
    generic = classify("5.0.0", None, "550 5.1.1 no such user")
    assert generic.status == "5.1.1"  # the text's specific code beats a generic 5.0.0
    assert classify("garbage", None, "").status == ""


def test_finders() -> None:
    assert find_status("host said: 550 5.1.1 <a@b>: 4.4.7") == "5.1.1"
    assert find_status("5.0.0 then 5.2.2") == "5.2.2"
    assert find_status("version 1.2.3.4 only") == ""
    assert find_code("Remote host said: 553 sorry") == 553
    assert find_code("listed at 192.0.2.10 (#5.1.1)") is None


@pytest.mark.parametrize(
    ("status", "text", "command", "kind"),
    [
        # A specific status decides; the text refines it.
        ("5.2.1", "550 5.2.1 This account has been suspended", "", Kind.SOFT),
        ("5.2.0", "550 Unknown user ann@example.jp", "", Kind.SOFT),  # X.2.0: the mailbox exists
        # X.2.1 (disabled) and X.3.x (the system) with "user unknown" words: the address itself
        # was refused only when the reply answered RCPT TO.
        ("5.2.1", "550 5.2.1 <ann@example.jp>... User Unknown", "", Kind.SOFT),
        ("5.2.1", "550 5.2.1 <ann@example.jp>... User Unknown", "DATA", Kind.SOFT),
        ("5.2.1", "550 5.2.1 <ann@example.jp>... User Unknown", "RCPT", Kind.HARD),
        ("5.3.0", "5.3.0 - Other mail system problem 550 'Unknown user ann'", "", Kind.SOFT),
        ("5.3.0", "553 5.3.0 <ann@example.jp>... No such user here", "RCPT", Kind.HARD),
        ("5.1.8", "553 5.1.8 Domain of sender address does not exist", "", Kind.BLOCK),
        ("5.3.4", "554 5.3.4 Recipient address rejected: Message too big", "", Kind.SOFT),
        ("5.6.0", "550 5.6.0 Recipient address rejected: Media error", "", Kind.SOFT),
        ("5.1.1", "550 5.7.1 IP address blacklisted by recipient", "", Kind.BLOCK),
        ("5.1.1", "550 5.1.1 user unknown", "DATA", Kind.HARD),  # X.1.1 stands
        # A generic status: the text decides, and the SMTP command it answered.
        ("5.0.0", "550 User unknown", "RCPT", Kind.HARD),
        ("5.0.0", "550 User unknown", "DATA", Kind.BLOCK),  # the recipient had been accepted
        ("", "553 neko.example.com does not exist", "MAIL", Kind.BLOCK),  # our sender's domain
        ("", "550 Rejected", "", Kind.UNKNOWN),  # a 550 with words that say nothing
        ("", "550 Mailbox is frozen.", "", Kind.SOFT),
        ("", "Host not found, try again", "", Kind.SOFT),
        ("", "the group you tried to contact may not exist", "", Kind.UNKNOWN),
        ("", "User some.name not listed in Domino Directory", "", Kind.HARD),
        ("", "550 Host unknown (Authoritative answer from name server)", "", Kind.HARD),
        ("", "procmail: Couldn't create /var/spool/mail/ann: No such user", "", Kind.SOFT),
    ],
)
def test_status_text_and_command(status: str, text: str, command: str, kind: Kind) -> None:
    assert classify(status, None, text, command=command).kind is kind


def test_field_comments_are_dropped() -> None:
    assert uncomment("5.1.1 (bad destination mailbox address)") == "5.1.1"
    assert uncomment("failed (permanent (nested) failure)") == "failed"
    assert classify("5.1.1 (user unknown)", None, "").kind is Kind.HARD


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("550 <ann@example.jp>: Recipient address rejected (in reply to RCPT TO command)", "RCPT"),
        ("mx.example.jp [192.0.2.7] did not like our RCPT TO:\n550 No such user", "RCPT"),
        ("192.0.2.7 does not like recipient.\nRemote host said: 550 unknown user", "RCPT"),
        ("mx.example.jp [192.0.2.7] did not like our final DATA:\n554 rejected", "DATA"),
        ("Remote host said: 554 content refused\nfailed after I sent the message.", "DATA"),
        # The recipient's slot left empty: the reply answered the message, not an address.
        ("Diagnostic-Code: smtp; 550 : User unknown", "DATA"),
        ("<ann@example.jp>:\n550: : User unknown", "DATA"),
        ("550 5.2.1 : User unknown", "DATA"),
        ("550 <ann@example.jp>: User unknown", ""),
        ("550 ann@example.jp: User unknown", ""),
        ("550 <  >: User unknown", ""),  # an address the reader blanked out is still a slot
        ("550 : User unknown (in reply to RCPT TO command)", "RCPT"),
        ("at 10:15 : delivery failed", ""),  # a time is no reply code
    ],
)
def test_the_command_a_reply_answered(text: str, command: str) -> None:
    assert command_of(text) == command


def test_user_unknown_with_an_empty_slot_is_a_filter_not_a_missing_mailbox() -> None:
    text = "550 : User unknown"
    assert classify("5.0.0", None, text, command=command_of(text)).kind is Kind.BLOCK
    named = "550 <ann@example.jp>: User unknown"
    assert classify("5.0.0", None, named, command=command_of(named)).kind is Kind.HARD


def test_mailbox_states() -> None:
    assert mailbox_state("The user's account is disabled.")
    assert mailbox_state("Not enough disk space")
    assert mailbox_state("Mailbox is full")
    assert not mailbox_state("The address couldn't be found; try again")
    assert not mailbox_state("User unknown")
