"""Article sources: the seed export, Markdown with front matter, and errors."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from weekly_mailer.articles import load_article, parse_markdown, parse_plaintext
from weekly_mailer.errors import ArticleError

DATA = Path(__file__).parents[1] / "data"


def test_seed_article_field_by_field(seed_path: Path) -> None:
    article = load_article(str(seed_path))
    assert article.title == "In Cambodia: Ending Violence against Women"
    assert article.date == dt.datetime(2007, 11, 21, tzinfo=dt.UTC)
    assert article.author == "Marielle Sander Lindstrom"
    assert article.author_bio.startswith("Marielle Sander Lindstrom is the Chief of Party")
    assert article.author_bio.endswith("in Cambodia.")
    assert article.tags == {
        "Related locations": ["Cambodia"],
        "Related programs": ["Empower Women"],
    }
    assert article.canonical_url == ""
    assert article.source == str(seed_path)
    assert article.summary.startswith("November 25th was International Day")
    assert article.summary.endswith("…") and len(article.summary) <= 201
    paragraphs = article.body_html.split("\n")
    assert len(paragraphs) == 7
    assert all(p.startswith("<p>") and p.endswith("</p>") for p in paragraphs)
    assert paragraphs[0].startswith("<p>November 25th was International Day")
    assert paragraphs[-1].startswith("<p>Much of the trafficking and ensuing trauma")
    # The masthead, the byline, the bio, the tags and the page chrome are not body text.
    for chrome in (
        "Weekly Insights",
        "By Marielle",
        "is the Chief of Party",
        "Related locations",
        "Submit a Comment",
        "will not be published",
        "About our blog",
        "California St",
        "PO Box",
        "Mailing Address",
        "\\",
    ):
        assert chrome not in article.body_html
    assert "women’s security" in article.body_html  # typographic apostrophes kept
    # Dashes the export turned into a lone closing quote are dashes again.
    assert " ” " not in article.body_html
    assert "population — particularly children" in article.body_html


def test_export_artefacts_are_repaired() -> None:
    text = (
        "Field Notes\n\nA Town\\’s Long Winter\n\nMarch 3, 2026\n\nBy Jo Lee\n\n"
        'The town\\\'s mayor said \\"enough\\".\n\nSecond paragraph.\n\n'
        "Jo Lee is a reporter ” and editor.\n\n"
        "Related locations: Norway, Iceland\n\nSubmit a Comment\n\nx"
    )
    article = parse_plaintext(text)
    assert article.title == "A Town’s Long Winter"
    assert article.author == "Jo Lee"
    assert article.author_bio == "Jo Lee is a reporter — and editor."
    assert article.body_html == '<p>The town\'s mayor said "enough".</p>\n<p>Second paragraph.</p>'
    assert article.tags == {"Related locations": ["Norway", "Iceland"]}


def test_plaintext_without_date_uses_first_block_as_title() -> None:
    article = parse_plaintext("Just a title\n\nAnd a body.\n")
    assert article.title == "Just a title"
    assert article.date is None and article.author == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the text is empty"),
        ("Title only\n\nSubmit a Comment\n\nchrome", "has no body text"),
        ("November 1, 2026\n\nBody.", "no title before the date line"),
    ],
)
def test_plaintext_errors(text: str, message: str) -> None:
    with pytest.raises(ArticleError, match=message):
        parse_plaintext(text, source="x.txt")


def test_markdown_with_front_matter() -> None:
    article = load_article(str(DATA / "article.md"))
    assert article.title == "Rivers That Remember: Notes from the Mekong Delta"
    assert article.date == dt.datetime(2026, 11, 18, tzinfo=dt.UTC)
    assert article.author == "Ana Okafor"
    assert article.author_bio.startswith("Ana Okafor writes")
    assert article.tags == {
        "Related locations": ["Vietnam", "Cambodia"],
        "Related programs": ["Water Security"],
    }
    assert article.canonical_url == "https://blog.example.org/2026/11/rivers-that-remember"
    assert article.summary.startswith("A week on the delta")
    assert "<h2>What the water decides</h2>" in article.body_html
    assert "<em>bánh mì</em>" in article.body_html
    assert (
        '<img src="https://blog.example.org/img/market.jpg" alt="A floating market at dawn">'
        in (article.body_html)
    )
    assert 'rel="noopener noreferrer"' in article.body_html


def test_markdown_title_from_heading_and_sanitised() -> None:
    text = (
        "# Hello *there*\n\nBody <script>alert(1)</script> "
        '<a href="javascript:alert(1)" onclick="x()">link</a>\n'
    )
    article = parse_markdown(text)
    assert article.title == "Hello there"
    assert "script" not in article.body_html and "alert" not in article.body_html.replace(
        "alert(1)", ""
    )
    assert "javascript" not in article.body_html and "onclick" not in article.body_html


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\ntitle: [unclosed\n---\nBody\n", r"bad front matter \(line \d+\): not valid YAML"),
        ("---\n- a\n- b\n---\nBody\n", "expected 'key: value' lines"),
        ("---\ntitle: x\nBody\n", "no closing '---' line"),
        ("---\ntitel: x\n---\nBody\n", "unknown front matter key"),
        ("Body without a title\n", "no title"),
        ("---\ntitle: T\n---\n\n   \n", "has no body text"),
        ("---\ntitle: T\ndate: someday\n---\nBody\n", "is not a date"),
    ],
)
def test_markdown_errors(text: str, message: str) -> None:
    with pytest.raises(ArticleError, match=message):
        parse_markdown(text, source="a.md")


def test_load_article_errors(tmp_path: Path) -> None:
    with pytest.raises(ArticleError, match="cannot read the article"):
        load_article(str(tmp_path / "missing.md"))
    with pytest.raises(ArticleError, match="no article source"):
        load_article("")
    with pytest.raises(ArticleError, match="is a folder"):
        load_article(str(tmp_path))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Caf\xe9\n\nBody".encode("latin-1"))
    with pytest.raises(ArticleError, match="not UTF-8"):
        load_article(str(bad))


def test_article_dict_round_trip() -> None:
    from weekly_mailer.articles import Article

    article = load_article(str(DATA / "article.md"))
    assert Article.from_dict(article.to_dict()) == article


@pytest.mark.parametrize("url", ["javascript:alert(1)", "blog.example.org/post", "ftp://x.org/a"])
def test_markdown_unsafe_canonical_url_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    path = tmp_path / "week.md"
    path.write_text(f'---\ntitle: T\ncanonical_url: "{url}"\n---\nBody text.\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="weekly_mailer.articles"):
        article = load_article(str(path))
    assert article.canonical_url == ""
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: article link {url!r} dropped: not an absolute http(s) URL"
    ]
