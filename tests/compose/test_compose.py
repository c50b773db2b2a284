"""The composer: the seed and a Markdown article into an issue; headers, links, lint, templates."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from weekly_mailer.articles import Article, load_article
from weekly_mailer.compose import (
    POLICY,
    Recipient,
    build_confirmation_message,
    compose_issue,
    make_message_id,
    personalise,
    unsubscribe_url,
)
from weekly_mailer.compose.render import inline_css
from weekly_mailer.config import Settings
from weekly_mailer.errors import ComposeError, HeaderInjectionError
from weekly_mailer.tokens import Purpose, TokenSigner

DATA = Path(__file__).parents[1] / "data"
WEEK = dt.date(2026, 11, 25)
WHEN = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> tuple[str, str]:
    text_part, html_part = list(msg.iter_parts())
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    return (
        text_part.get_content().replace("\r\n", "\n"),
        html_part.get_content().replace("\r\n", "\n"),
    )


def recipient(
    settings: Settings, name: str = "Ana Okafor", addr: str = "ana@example.net"
) -> Recipient:
    return Recipient(7, addr, name, unsubscribe_url(settings, 7, addr.lower()))


def test_seed_composes_into_an_issue(seed_path: Path, settings: Settings) -> None:
    issue = compose_issue(load_article(str(seed_path)), settings, send_week=WEEK, issue_id=3)
    assert issue.subject == "In Cambodia: Ending Violence against Women"
    assert not issue.lint.hard_failure, issue.lint
    assert issue.lint.warnings == ()
    text = issue.text_template
    assert text.startswith("In Cambodia: Ending Violence against Women\n=====")
    assert "By Marielle Sander Lindstrom · November 21, 2007" in text
    assert "Hello @@WM_NAME@@," in text
    assert "Related locations: Cambodia\nRelated programs: Empower Women" in text
    assert "\nMarielle Sander Lindstrom is the Chief of Party" in text
    assert "View in browser: https://news.example.org/archive/3" in text
    assert "Unsubscribe: @@WM_UNSUBSCRIBE_URL@@" in text
    assert "In Brief · 1 Example Street, Springfield" in text
    for chrome in ("Submit a Comment", "About our blog", "PO Box", "Weekly Insights"):
        assert chrome not in text and chrome not in issue.html_template
    assert max(len(line) for line in text.splitlines() if "@@WM" not in line) <= 72
    html = issue.html_template
    assert '<html lang="en"' in html and 'role="presentation"' in html
    assert "@media only screen and (max-width: 620px)" in html
    assert '<h1 class="title" style=' in html  # inlined
    assert html.count("<p style=") >= 7
    assert 'href="@@WM_UNSUBSCRIBE_URL@@"' in html
    assert 'href="https://news.example.org/archive/3"' in html
    # The archive copy carries no marker and nobody's data, but says how to subscribe.
    assert "@@WM" not in issue.archive_html
    assert "Unsubscribe" not in issue.archive_html
    assert 'href="https://news.example.org/"' in issue.archive_html


def test_placeholders_survive_premailer() -> None:
    # The problem: premailer URL-encodes the spaces of a Jinja-style placeholder inside href.
    mangled = inline_css('<html><body><a href="{{ unsubscribe_url }}">u</a></body></html>')
    assert "{{ unsubscribe_url }}" not in mangled and "{{%20unsubscribe_url%20}}" in mangled
    # Ours go through untouched, in attributes and in text.
    out = inline_css(
        "<html><head><style>a {color: red}</style></head><body>"
        '<a href="@@WM_UNSUBSCRIBE_URL@@">@@WM_NAME@@</a> @@WM_EMAIL@@</body></html>'
    )
    assert '<a href="@@WM_UNSUBSCRIBE_URL@@" style="color:red">@@WM_NAME@@</a>' in out
    assert "@@WM_EMAIL@@" in out


def test_message_headers_and_parts(settings: Settings) -> None:
    settings = settings.replace(unsubscribe_mailto="leave@example.org", reply_to="ed@example.org")
    issue = compose_issue(load_article(str(DATA / "article.md")), settings, send_week=WEEK)
    who = recipient(settings, 'Zoë "Z" O’Brien, Jr.')
    message_id = make_message_id(settings, WEEK, 7)
    data = personalise(issue.skeleton, who, message_id=message_id, date=WHEN)

    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) < 998
    data.decode("ascii")  # 7-bit clean: quoted-printable bodies, RFC 2047 names
    msg = parse(data)
    assert [k for k, _ in msg.items()] == [
        "From", "Reply-To", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
        "List-Unsubscribe-Post", "Precedence", "Feedback-ID", "MIME-Version", "Content-Type",
    ]  # fmt: skip
    assert msg["From"] == "In Brief <news@example.org>"
    assert msg["To"].addresses[0].display_name == 'Zoë "Z" O’Brien, Jr.'
    assert msg["To"].addresses[0].addr_spec == "ana@example.net"
    assert msg["Subject"] == "Rivers That Remember: Notes from the Mekong Delta"
    assert msg["Date"].datetime == WHEN
    assert msg["Message-ID"] == message_id
    assert msg["List-Id"] == "In Brief <inbrief.example.org>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Precedence"] == "bulk"
    assert msg.get_content_type() == "multipart/alternative"
    # List-Unsubscribe: folded between its URLs only, unencoded, the URL parses back exactly.
    url = who.unsubscribe_url
    line = f"List-Unsubscribe: <{url}>,\r\n <mailto:leave@example.org?subject=unsubscribe>\r\n"
    assert line.encode() in data
    assert str(msg["List-Unsubscribe"]).split(", ")[0] == f"<{url}>"
    signer = TokenSigner(settings.secret_key)
    subscriber_id, digest = signer.load(Purpose.UNSUBSCRIBE, url.rsplit("/", 1)[1])
    assert subscriber_id == 7 and signer.matches(digest, "ana@example.net")

    text, html = parts(msg)
    assert 'Hello Zoë "Z" O’Brien, Jr.,\n' in text
    assert f"Unsubscribe: {url}\n" in text
    assert "because ana@example.net subscribed" in text
    assert "Hello Zoë &quot;Z&quot; O’Brien, Jr.," in html
    assert f'href="{url}"' in html
    assert "@@WM" not in text + html


def test_message_id_is_deterministic(settings: Settings) -> None:
    a = make_message_id(settings, 5, 7)
    assert a == make_message_id(settings, 5, 7)
    assert a != make_message_id(settings, 5, 8) != make_message_id(settings, 6, 7)
    assert a.startswith("<wm.5.7.") and a.endswith("@example.org>")
    assert make_message_id(settings, WEEK, 7).startswith("<wm.2026-11-25.7.")


def test_name_fallback_and_ascii_names(settings: Settings) -> None:
    issue = compose_issue(load_article(str(DATA / "article.md")), settings, send_week=WEEK)
    for name, header in [("", "ana@example.net"), ("Ana", "Ana <ana@example.net>"),
                         ("Dr. Ana", '"Dr. Ana" <ana@example.net>')]:  # fmt: skip
        data = issue.message_for(recipient(settings, name), message_id="<a@b>", date=WHEN)
        assert f"To: {header}\r\n".encode() in data
        text, _html = parts(parse(data))
        assert f"Hello {name or 'there'},\n" in text


@pytest.mark.parametrize(
    ("name", "addr", "error", "message"),
    [
        ("Eve\r\nBcc: all@example.org", "eve@example.org", HeaderInjectionError, "line break"),
        ("Eve", "eve@example.org\nBcc: x@y.org", HeaderInjectionError, "line break"),
        ("Eve\x00", "eve@example.org", ComposeError, "control character U\\+0000"),
        ("Eve\u2028", "eve@example.org", ComposeError, "control character U\\+2028"),
        ("Eve", "not-an-address", ComposeError, "not an e-mail address"),
        ("Eve", "eve@exämple.org", ComposeError, "SMTPUTF8"),
        ("E" * 201, "eve@example.org", ComposeError, "longer than 200"),
        ("=?utf-8?q?Eve?=", "eve@example.org", ComposeError, "misread as encoding"),
        ("😀" * 120, "eve@example.org", ComposeError, "longer than 450 bytes"),
    ],
)
def test_unsafe_values_are_refused(
    settings: Settings, name: str, addr: str, error: type[Exception], message: str
) -> None:
    issue = compose_issue(load_article(str(DATA / "article.md")), settings, send_week=WEEK)
    who = Recipient(1, addr, name, "https://news.example.org/unsubscribe/t")
    with pytest.raises(error, match=message):
        issue.message_for(who, message_id="<a@b>", date=WHEN)
    with pytest.raises(error, match=message):
        issue.reference_message(settings, who, message_id="<a@b>", date=WHEN)


def test_bad_message_id_url_and_date_are_refused(settings: Settings) -> None:
    issue = compose_issue(load_article(str(DATA / "article.md")), settings, send_week=WEEK)
    who = recipient(settings)
    with pytest.raises(HeaderInjectionError):
        issue.message_for(who, message_id="<a@b>\r\nBcc: x", date=WHEN)
    with pytest.raises(ComposeError, match="not a Message-ID"):
        issue.message_for(who, message_id="a@b", date=WHEN)
    with pytest.raises(ComposeError, match="timezone-aware"):
        issue.message_for(who, message_id="<a@b>", date=dt.datetime(2026, 1, 1))
    bad = Recipient(1, "a@example.org", "", "https://x.org/u>\r\nBcc: y")
    with pytest.raises(HeaderInjectionError):
        issue.message_for(bad, message_id="<a@b>", date=WHEN)
    with pytest.raises(ComposeError, match="not an absolute http"):
        issue.message_for(
            Recipient(1, "a@example.org", "", "/relative"), message_id="<a@b>", date=WHEN
        )


def test_subject_with_line_break_is_refused(settings: Settings) -> None:
    article = load_article(str(DATA / "article.md"))
    with pytest.raises(HeaderInjectionError, match="subject"):
        compose_issue(article, settings, send_week=WEEK, subject_prefix="[TEST]\r\nBcc: x ")


def test_long_non_ascii_name_round_trips(settings: Settings) -> None:
    # Found by hypothesis: split encoded-words gain a space in Python's parser.
    issue = compose_issue(Article(title="T", body_html="<p>B</p>"), settings, send_week=WEEK)
    for name in ["0000000000000000000¡¡¡¡¡¡¡¡¡ࠀࠀࠀ", "Zoë " * 40, "李" * 150]:
        who = recipient(settings, name.strip())
        data = issue.message_for(who, message_id="<a@b>", date=WHEN)
        assert max(len(line) for line in data.split(b"\r\n")) < 998
        assert parse(data)["To"].addresses[0].display_name == name.strip()


def test_non_ascii_subject_and_sender(settings: Settings) -> None:
    settings = settings.replace(from_address="Ñews Désk <news@example.org>", list_name="Ça va")
    article = Article(title="Über café: «naïve» 日本", body_html="<p>Body.</p>")
    issue = compose_issue(article, settings, send_week=WEEK)
    data = issue.message_for(recipient(settings, "李小龍"), message_id="<a@b>", date=WHEN)
    data.decode("ascii")
    msg = parse(data)
    assert msg["Subject"] == "Über café: «naïve» 日本"
    assert msg["From"].addresses[0].display_name == "Ñews Désk"
    assert msg["To"].addresses[0].display_name == "李小龍"


def test_lint_findings(settings: Settings) -> None:
    body = (
        '<p><a href="/relative">rel</a> <a href="">empty</a> <a href="https://ok.org">ok</a>'
        '<img src="https://x.org/a.png"> <img src="b.png" alt="b"></p>'
    )
    article = Article(title="T", body_html=body)
    report = compose_issue(article, settings.replace(postal_address=""), send_week=WEEK).lint
    assert report.hard_failure
    assert "a link is relative or of an unsupported kind: '/relative'" in report.errors
    assert "a link has an empty address (href)" in report.errors
    assert "an image's address is missing or relative: 'b.png'" in report.errors
    assert "an image has no alt text: 'https://x.org/a.png'" in report.warnings
    assert any("postal_address" in w for w in report.warnings)
    big = Article(title="T", body_html="<p>" + "word " * 25000 + "</p>")
    report = compose_issue(big, settings, send_week=WEEK).lint
    assert any("Gmail clips" in e for e in report.errors)
    assert str(report).startswith("error: the HTML is")


def test_templates_dir_overrides_one_template(settings: Settings, tmp_path: Path) -> None:
    custom = tmp_path / "mytemplates" / "email"
    custom.mkdir(parents=True)
    (custom / "issue.txt").write_text(
        "CUSTOM {{ article.title }}\nBye {{ ph.name }}: {{ ph.unsubscribe_url }}\n"
    )
    settings = settings.replace(templates_dir=str(tmp_path / "mytemplates"))
    issue = compose_issue(Article(title="T", body_html="<p>B</p>"), settings, send_week=WEEK)
    assert issue.text_template == "CUSTOM T\nBye @@WM_NAME@@: @@WM_UNSUBSCRIBE_URL@@\n"
    assert '<h1 class="title"' in issue.html_template  # the built-in HTML is still used
    (custom / "issue.html").write_text("<html><body><p>{{ article.title }}</p></body></html>")
    settings = settings.replace(templates_dir=str(tmp_path / "mytemplates") + "/")
    report = compose_issue(Article(title="T", body_html="<p>B</p>"), settings, send_week=WEEK).lint
    assert "the HTML has no unsubscribe link" in report.errors


def test_template_errors_are_one_line(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "issue.txt").write_text("{% if %}\n")
    settings = settings.replace(templates_dir=str(tmp_path))
    with pytest.raises(ComposeError, match=r"template .*issue.txt: line 1: "):
        compose_issue(Article(title="T", body_html="<p>B</p>"), settings, send_week=WEEK)
    with pytest.raises(ComposeError, match="is not a folder"):
        compose_issue(
            Article(title="T", body_html="<p>B</p>"),
            settings.replace(templates_dir=str(tmp_path / "nope")),
            send_week=WEEK,
        )


def test_reserved_marker_text_in_article_is_refused(settings: Settings) -> None:
    with pytest.raises(ComposeError, match="reserved text"):
        compose_issue(Article(title="T", body_html="<p>@@WM_NAME@@</p>"), settings, send_week=WEEK)


def test_confirmation_message(settings: Settings) -> None:
    url = "https://news.example.org/confirm/abc.def"
    data = build_confirmation_message(
        settings, email="zoe@example.net", name="Zoë", confirm_url=url
    )
    assert b"\n" not in data.replace(b"\r\n", b"")
    msg = parse(data)
    assert msg["To"] == "zoe@example.net"
    assert msg["Subject"] == "Confirm your subscription to In Brief"
    assert msg["From"] == "In Brief <news@example.org>"
    assert msg["Message-ID"].endswith("@example.org>")
    text, html = parts(msg)
    assert url in text and f'href="{url}"' in html
    assert "Hello,\n" in text and "Hello," in html and "zoe@example.net" in html
    assert "Zoë" not in text and "Zoë" not in html
    with pytest.raises(HeaderInjectionError):
        build_confirmation_message(settings, email="a@b.org\nBcc: y", name="", confirm_url=url)


def test_confirmation_message_never_repeats_the_signup_name(settings: Settings) -> None:
    """The name comes from a public form: mailing it back would relay a stranger's text."""
    url = "https://news.example.org/confirm/abc.def"
    spam = "Win $$$ at https://spam.example.com/now"
    data = build_confirmation_message(
        settings, email="victim@example.net", name=spam, confirm_url=url
    )
    msg = parse(data)
    text, html = parts(msg)
    assert msg["To"] == "victim@example.net"
    assert text.split("\n")[3] == "Hello,"
    for shown in (data.decode("ascii"), text, html):
        assert "spam.example.com" not in shown and "Win $$$" not in shown


def test_reference_serialises_like_fast_path(settings: Settings) -> None:
    issue = compose_issue(load_article(str(DATA / "article.md")), settings, send_week=WEEK)
    who = recipient(settings)
    fast = parse(issue.message_for(who, message_id="<a@b>", date=WHEN))
    slow = parse(
        issue.reference_message(settings, who, message_id="<a@b>", date=WHEN).as_bytes(
            policy=POLICY
        )
    )
    assert fast.items() == slow.items()
    assert parts(fast) == parts(slow)


def test_every_issue_copy_carries_a_feedback_id_safe_for_gmail(settings: Settings) -> None:
    settings = settings.replace(list_name="The Hedge: weekly", list_id="hedge.example.org")
    issue = compose_issue(load_article(str(DATA / "article.md")), settings, send_week=WEEK)
    who = recipient(settings, "Ann")
    mid = make_message_id(settings, WEEK, 7)
    fast = parse(personalise(issue.skeleton, who, message_id=mid, date=WHEN))
    slow = issue.reference_message(settings, who, message_id=mid, date=WHEN)
    value = f"{WEEK.isoformat()}:The-Hedge-weekly:weekly_mailer:hedge.example.org"
    assert fast["Feedback-ID"] == slow["Feedback-ID"] == value
    assert len(value.split(":")) == 4  # a:b:c:SenderId, no colon inside a field
