"""Property tests: any name or address gives a valid message whose headers round-trip (or a clear
refusal, never an injected header), and the fast bytes equal the reference path's message."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from weekly_mailer.articles import load_article
from weekly_mailer.compose import POLICY, ComposedIssue, Recipient, compose_issue
from weekly_mailer.config import Settings
from weekly_mailer.errors import ComposeError

DATA = Path(__file__).parents[1] / "data"
WHEN = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)
EXPECTED_HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
    "List-Unsubscribe-Post", "Precedence", "Feedback-ID", "MIME-Version", "Content-Type",
]  # fmt: skip
SETTINGS = Settings(
    secret_key="property-secret",
    base_url="https://news.example.org",
    from_address="In Brief <news@example.org>",
    list_name="In Brief",
    list_id="inbrief.example.org",
    postal_address="1 Example Street",
    unsubscribe_mailto="leave@example.org",
)


@pytest.fixture(scope="module")
def issue() -> ComposedIssue:
    article = load_article(str(DATA / "article.md"))
    return compose_issue(article, SETTINGS, send_week=dt.date(2026, 11, 25), issue_id=9)


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def contents(msg: EmailMessage) -> list[tuple[str, str, str]]:
    return [
        (p.get_content_type(), p.get_content_charset() or "", p.get_content())
        for p in msg.iter_parts()
    ]


names = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=220),
    st.from_regex(r"[A-Za-z .,'\"\\()<>@;:=?-]{0,40}", fullmatch=True),
    st.text(
        alphabet=st.characters(min_codepoint=0x80, codec="utf-8", exclude_categories=["Cc"]),
        min_size=20,
        max_size=200,
    ),
    st.sampled_from(["", "Ana", "Zoë O’Brien", "=?utf-8?q?x?=", 'a "b" \\c', "x\r\nBcc: y@z.org"]),
)
addresses = st.one_of(
    st.emails(),
    st.from_regex(r"[a-z0-9]{1,64}@[a-z]{1,63}\.[a-z]{1,63}\.[a-z]{2,50}", fullmatch=True),
    st.text(max_size=40),
    st.sampled_from(["ana@example.org", "a@b", "x@y.org\r\nBcc: z@w.org", "ü@example.org"]),
)
urls = st.one_of(
    st.just("https://news.example.org/unsubscribe/abc.def-ghi_jkl"),
    st.from_regex(
        r"https://news\.example\.org/unsubscribe/[A-Za-z0-9._=&%-]{1,200}", fullmatch=True
    ),
    st.text(max_size=30),
)


@hsettings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=names, address=addresses, url=urls, subscriber_id=st.integers(1, 2**31))
def test_fast_path_equals_reference_or_refuses(
    issue: ComposedIssue, name: str, address: str, url: str, subscriber_id: int
) -> None:
    who = Recipient(subscriber_id, address, name, url)
    message_id = f"<wm.9.{subscriber_id}.x@example.org>"
    try:
        fast = issue.message_for(who, message_id=message_id, date=WHEN)
    except ComposeError as exc:
        assert "\n" not in str(exc) and str(exc)
        # The reference path refuses the same recipient.
        with pytest.raises(type(exc)):
            issue.reference_message(SETTINGS, who, message_id=message_id, date=WHEN)
        return
    # Never an injected header: only our headers, CRLF only, lines under 998 octets.
    assert b"\n" not in fast.replace(b"\r\n", b"") and b"\r" not in fast.replace(b"\r\n", b"")
    assert all(len(line) < 998 for line in fast.split(b"\r\n"))
    msg = parse(fast)
    assert [k for k, _ in msg.items()] == EXPECTED_HEADERS
    assert not msg.defects
    # The headers round-trip.
    (to,) = msg["To"].addresses
    assert to.display_name == " ".join(name.split())
    assert to.addr_spec == address
    assert str(msg["List-Unsubscribe"]) == (
        f"<{url}>, <mailto:leave@example.org?subject=unsubscribe>"
    )
    assert msg["Message-ID"] == message_id
    # Exactly what the reference path (a full EmailMessage per recipient) produces.
    ref = parse(
        issue.reference_message(SETTINGS, who, message_id=message_id, date=WHEN).as_bytes(
            policy=POLICY
        )
    )
    assert msg.items() == ref.items()
    assert contents(msg) == contents(ref)
    text = contents(msg)[0][2]
    assert f"Unsubscribe: {url}\r\n" in text


@hsettings(max_examples=25, deadline=None)
@given(name=names, address=addresses)
def test_confirmation_message_round_trips_or_refuses(name: str, address: str) -> None:
    from weekly_mailer.compose import build_confirmation_message

    url = "https://news.example.org/confirm/abc.def"
    try:
        data = build_confirmation_message(SETTINGS, email=address, name=name, confirm_url=url)
    except ComposeError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert b"\n" not in data.replace(b"\r\n", b"")
    msg = parse(data)
    assert [k for k, _ in msg.items()] == [
        "From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "MIME-Version",
        "Content-Type",
    ]  # fmt: skip
    (to,) = msg["To"].addresses
    assert to.display_name == "" and to.addr_spec == address  # the sign-up name is never mailed
    assert url in contents(msg)[0][2]


@hsettings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=names, address=addresses, url=urls)
def test_a_message_said_wire_safe_needs_no_smtp_transparency(
    issue: ComposedIssue, name: str, address: str, url: str
) -> None:
    """What ``personalise_for_smtp`` calls wire-safe is what the engine's full scan
    (``wire_data``: CRLF only, dot-stuffed) would send unchanged, but for the final dot."""
    from weekly_mailer.compose import personalise_for_smtp
    from weekly_mailer.delivery.backends.smtp_session import wire_data

    who = Recipient(7, address, name, url)
    try:
        data, safe = personalise_for_smtp(
            issue.skeleton, who, message_id="<wm.9.7.x@example.org>", date=WHEN
        )
    except ComposeError:
        return
    assert data == issue.message_for(who, message_id="<wm.9.7.x@example.org>", date=WHEN)
    if safe:
        assert wire_data(data) == data + b".\r\n"


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("Ana", True),
        ("Zoë O’Brien", True),
        (".Dot", False),
        ("a" * 75 + ".b", False),  # quoted-printable's soft break puts the dot first
        ("a" * 70 + ".b", True),
    ],
)
def test_an_ordinary_copy_is_wire_safe_and_a_leading_dot_is_not(
    issue: ComposedIssue, name: str, safe: bool
) -> None:
    from weekly_mailer.compose import personalise_for_smtp
    from weekly_mailer.delivery.backends.smtp_session import wire_data

    who = Recipient(7, "ana@example.org", name, "https://news.example.org/unsubscribe/a.b")
    data, wire_safe = personalise_for_smtp(
        issue.skeleton, who, message_id="<wm.9.7.x@example.org>", date=WHEN
    )
    assert wire_safe is safe
    assert (wire_data(data) == data + b".\r\n") is safe  # a leading dot is stuffed
