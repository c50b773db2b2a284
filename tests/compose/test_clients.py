"""What mail clients and filters check in our bodies, on the bytes we send: the text and HTML
parts carry the same links, as often each (rspamd's URI_COUNT_ODD counts them); no raw URL in the
HTML where a button carries it (it would widen the message); the preheader hidden without text
coloured like its background (SpamAssassin's HTML_FONT_LOW_CONTRAST); dark-mode styles that
survive the CSS inlining; quoted-printable lines of at most 76 characters."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html
import re
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

import pytest

from weekly_mailer.articles import load_article
from weekly_mailer.compose import Recipient, compose_issue, unsubscribe_url
from weekly_mailer.compose.links import make_message_id
from weekly_mailer.compose.message import build_confirmation_message
from weekly_mailer.config import Settings

DATA = Path(__file__).parents[1] / "data"
WEEK = dt.date(2026, 11, 25)
CONFIRM = "https://news.example.org/confirm/" + "WzEsIjgzZjE0ODhmOTJlMSJd.axZSIg." + "Ab1_" * 30


def _issue_bytes(settings: Settings, path: Path) -> bytes:
    issue = compose_issue(load_article(str(path)), settings, send_week=WEEK)
    who = Recipient(7, "ana@example.net", "Ana", unsubscribe_url(settings, 7, "ana@example.net"))
    when = dt.datetime(2026, 11, 26, 2, tzinfo=dt.UTC)
    return issue.message_for(who, message_id=make_message_id(settings, WEEK, 7), date=when)


def _parts(data: bytes) -> tuple[str, str]:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text, body = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and body is not None
    return str(text.get_content()), str(body.get_content())


def _links(text: str, body: str) -> tuple[Counter[str], Counter[str]]:
    hrefs = Counter(html.unescape(h) for h in re.findall(r'href="((?:https?|mailto):[^"]+)"', body))
    urls = Counter(re.findall(r"https?://[^\s<>\"')\]]+", text))
    urls += Counter(f"mailto:{m}" for m in re.findall(r"mailto:([^\s<>\"')\]]+)", text))
    return hrefs, urls


@pytest.fixture(params=["markdown", "seed", "confirmation"])
def message(request: pytest.FixtureRequest, settings: Settings) -> bytes:
    if request.param == "confirmation":
        return build_confirmation_message(
            settings, email="ana@example.net", name="", confirm_url=CONFIRM
        )
    path = request.getfixturevalue("seed_path") if request.param == "seed" else DATA / "article.md"
    return _issue_bytes(settings, path)


def test_the_text_and_html_parts_carry_the_same_links(message: bytes) -> None:
    text, body = _parts(message)
    hrefs, urls = _links(text, body)
    assert hrefs and hrefs == urls, (hrefs - urls, urls - hrefs)


def test_no_raw_url_beside_the_confirmation_button(settings: Settings) -> None:
    _, body = _parts(
        build_confirmation_message(settings, email="ana@example.net", name="", confirm_url=CONFIRM)
    )
    visible = re.sub(r"<[^>]+>", " ", re.sub(r"<(style|title)\b.*?</\1>", "", body, flags=re.S))
    assert "confirm/" not in visible  # only the button's href carries it
    cell = re.search(r'<td[^>]*class="button-cell"[^>]*>', body)
    assert cell is not None  # a bulletproof button: the colour is on the cell too
    assert "background-color" in cell.group(0) and 'bgcolor="#' in cell.group(0)


def test_the_preheader_is_hidden_without_low_contrast_text(
    message: bytes, request: pytest.FixtureRequest
) -> None:
    _, body = _parts(message)
    pre = re.search(r'<div class="preheader" style="([^"]*)"', body)
    if request.node.callspec.params["message"] == "confirmation":
        # No hidden text at all where no List-Id says "a list" (SpamAssassin's STY_INVIS_DIRECT).
        assert pre is None and "display: none" not in body and "display:none" not in body
        return
    assert pre is not None
    style = pre.group(1).replace(" ", "")
    assert "display:none" in style and "mso-hide:all" in style
    assert "color:" not in style and "opacity" not in style and "font-size" not in style


def test_dark_mode_styles_survive_the_inlining(message: bytes) -> None:
    _, body = _parts(message)
    assert '<meta name="color-scheme" content="light dark">' in body
    dark = re.search(
        r"@media \(prefers-color-scheme: dark\) \{(.*?)\n\s*\}\s*</style>", body, flags=re.S
    )
    assert dark is not None and "!important" in dark.group(1)


def test_quoted_printable_lines_are_at_most_76_characters(message: bytes) -> None:
    body = message.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
