"""The message check on this week's issue as composed: signed headers, and the Gmail clip."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.preflight.world import ED_SELECTOR, RSA_SELECTOR, write_keys
from weekly_mailer.articles import Article
from weekly_mailer.compose import compose_issue
from weekly_mailer.config import Settings
from weekly_mailer.preflight.message import check_message

NOW = dt.datetime(2026, 12, 9, 2, 0, tzinfo=dt.UTC)


def signed(settings: Settings, tmp_path: Path) -> Settings:
    keys = write_keys(tmp_path / "keys")
    return settings.replace(
        dkim_domain="example.org",
        dkim_selector=RSA_SELECTOR,
        dkim_key_file=str(keys["rsa"]),
        dkim_ed25519_selector=ED_SELECTOR,
        dkim_ed25519_key_file=str(keys["ed25519"]),
    )


def skeleton(settings: Settings, paragraphs: int) -> bytes:
    line = "<p>Paragraph {}: the pond froze early this year.</p>"
    body = "".join(line.format(i) for i in range(paragraphs))
    article = Article(title="Frost", body_html=body)
    return compose_issue(article, settings, send_week=dt.date(2026, 12, 9)).skeleton


def test_a_normal_issue_is_under_the_clip_and_its_headers_are_signed(
    settings: Settings, tmp_path: Path
) -> None:
    s = signed(settings, tmp_path)
    checks = check_message(s, skeleton(s, 20), now=NOW)
    assert [c.level for c in checks] == ["ok", "ok"], checks
    assert "(Gmail clips beyond 102 KB)" in checks[0].what
    assert checks[1].what == (
        "message: List-Unsubscribe, List-Unsubscribe-Post, Feedback-ID present and DKIM-signed"
    )


def test_an_issue_over_102_kb_is_warned(settings: Settings, tmp_path: Path) -> None:
    s = signed(settings, tmp_path)
    checks = check_message(s, skeleton(s, 3000), now=NOW)
    assert checks[0].level == "warn", checks
    assert "Gmail clips beyond 102 KB" in checks[0].what
    assert int(checks[0].what.split("HTML is ")[1].split(" KB")[0]) > 102


def test_unsigned_mail_is_warned(settings: Settings) -> None:
    checks = check_message(settings, skeleton(settings, 5), now=NOW)
    assert [c.level for c in checks] == ["ok", "warn"]
    assert "not DKIM-signed" in checks[1].what
