"""Article sources → :class:`Article`: Markdown with front matter, the blog's plain-text export,
and RSS/Atom feeds. Bodies are sanitised HTML.

Entry point: :func:`load_article`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from weekly_mailer.articles.feed import fetch, is_url, parse_feed
from weekly_mailer.articles.markdown import parse_markdown
from weekly_mailer.articles.model import Article
from weekly_mailer.articles.plaintext import parse_plaintext
from weekly_mailer.errors import ArticleError

__all__ = [
    "Article",
    "ArticleError",
    "load_article",
    "parse_feed",
    "parse_markdown",
    "parse_plaintext",
]

FEED_SUFFIXES = (".xml", ".rss", ".atom")
MARKDOWN_SUFFIXES = (".md", ".markdown")


def load_article(
    source: str,
    *,
    week_start: dt.datetime | None = None,
    week_end: dt.datetime | None = None,
) -> Article:
    """Read one article from ``source`` and parse it by kind.

    A URL or a ``.xml``/``.rss``/``.atom`` path is a feed: its newest item published within
    ``[week_start, week_end)`` when a window is given, else its newest item. A ``.md`` path is
    Markdown with optional YAML front matter. Anything else is the blog's plain-text export.
    Raises :class:`~weekly_mailer.errors.ArticleError` with one line saying what is wrong.
    """
    if not source or not source.strip():
        raise ArticleError("no article source given (pass SOURCE or set article_source)")
    if is_url(source) or source.lower().endswith(FEED_SUFFIXES):
        return parse_feed(fetch(source), source=source, week_start=week_start, week_end=week_end)
    path = Path(source)
    if path.is_dir():
        raise ArticleError(f"{source}: is a folder, not an article file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArticleError(f"{source}: cannot read the article: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArticleError(f"{source}: the file is not UTF-8 text") from exc
    if path.suffix.lower() in MARKDOWN_SUFFIXES:
        return parse_markdown(text, source=source)
    return parse_plaintext(text, source=source)
