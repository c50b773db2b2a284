"""Golden files pin the composed HTML, text and message bytes (rss2email's ``.expected`` idea).

Regenerate after a deliberate template change with ``WEEKLY_MAILER_TEST_UPDATE_GOLDEN=1``, then
read the diff. The seed article's text must not be copied into the project, so its goldens pin
SHA-256 digests of the exact output plus a copy whose article words are masked (layout only).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from pathlib import Path

import pytest

from weekly_mailer.articles import Article, load_article
from weekly_mailer.compose import ComposedIssue, Recipient, compose_issue
from weekly_mailer.compose.render import builtin_templates_dir
from weekly_mailer.config import Settings

GOLDEN = Path(__file__).parents[1] / "golden"
DATA = Path(__file__).parents[1] / "data"
UPDATE = os.environ.get("WEEKLY_MAILER_TEST_UPDATE_GOLDEN") == "1"
SETTINGS = Settings(
    secret_key="golden-secret",
    base_url="https://news.example.org",
    from_address="In Brief <news@example.org>",
    list_name="In Brief",
    list_id="inbrief.example.org",
    postal_address="1 Example Street, Springfield",
    unsubscribe_mailto="leave@example.org",
)
WHO = Recipient(42, "zoe@example.net", "Zoë Adebayo", "https://news.example.org/unsubscribe/TOKEN")
WHEN = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)


def compose(article: Article) -> tuple[ComposedIssue, bytes]:
    issue = compose_issue(article, SETTINGS, send_week=dt.date(2026, 11, 25), issue_id=12)
    data = issue.message_for(WHO, message_id="<wm.12.42.golden@example.org>", date=WHEN)
    return issue, data


def check(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"{path} is missing: run with WEEKLY_MAILER_TEST_UPDATE_GOLDEN=1")
        path.write_text(actual, encoding="utf-8", newline="")
    with path.open(encoding="utf-8", newline="") as f:
        assert actual == f.read(), f"{name} differs"


def test_markdown_article_golden() -> None:
    issue, data = compose(load_article(str(DATA / "article.md")))
    check("markdown.issue.html", issue.html_template)
    check("markdown.issue.txt", issue.text_template)
    check("markdown.archive.html", issue.archive_html)
    check("markdown.message.eml", data.decode("ascii"))


def _template_words() -> set[str]:
    words: set[str] = set()
    for path in builtin_templates_dir().iterdir():
        words |= {w.lower() for w in re.findall(r"[^\W\d_]+", path.read_text(encoding="utf-8"))}
    words -= {"th", "td"}  # CSS selectors, and also an ordinal's ending ("25th") in articles
    return words | {"in", "brief", "example", "street", "springfield", "news", "org", "zoë"}


def mask(text: str, article: Article) -> str:
    """Every word that comes from the article (and not from our templates) becomes x's."""
    fields = " ".join(
        [article.title, article.author, article.summary, article.author_bio, article.body_html]
        + [f"{k} {' '.join(v)}" for k, v in article.tags.items()]
    )
    keep = _template_words()
    secret = {w.lower() for w in re.findall(r"[^\W\d_]+", fields)} - keep
    return re.sub(
        r"[^\W\d_]+",
        lambda m: "x" * len(m.group(0)) if m.group(0).lower() in secret else m.group(0),
        text,
    )


def test_seed_article_golden(seed_path: Path) -> None:
    article = load_article(str(seed_path))
    issue, data = compose(article)
    outputs = {
        "html": issue.html_template,
        "txt": issue.text_template,
        "eml": data.decode("ascii"),
    }
    digests = "".join(
        f"{hashlib.sha256(v.encode()).hexdigest()}  seed.issue.{k}\n" for k, v in outputs.items()
    )
    check("seed.sha256", digests)
    check("seed.issue.masked.html", mask(issue.html_template, article))
    check("seed.issue.masked.txt", mask(issue.text_template, article))
