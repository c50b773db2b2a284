"""Which article a scheduled send takes from ``settings.article_source``.

The rule (also in ``docs/operations.md``):

- **A feed** (URL, or a ``.xml``/``.rss``/``.atom`` file): its newest item published since the
  previous scheduled send (up to now), unless an issue was already made from it.
- **A folder**: the file whose name starts with the send week's date (``2026-11-25-*.md``);
  failing that, the most recently modified *undated* file not sent yet. Files whose names start
  with another date belong to their own week and are never taken early or late. Only ``.md``,
  ``.markdown`` and ``.txt`` files count; names starting with ``.`` or ``_`` are ignored.
- **One file**: that file, unless its current content was already sent.

"Already sent" compares the candidate's ``source_key`` with the ``Issue.source_key`` of every
issue so far. Keys come from :func:`weekly_mailer.issues.source_key`, the one definition that
``send`` and ``demo`` use too: a feed item's link, a file's name and content hash. A single file
counts as sent when that exact content was sent (a file edited for a new week is new); a folder
file when a file of that name was sent (editing it does not send it again).

No article is :class:`NoArticleError`: the week is then recorded as skipped with its message as
the reason. Any other :class:`~weekly_mailer.errors.ArticleError` (a feed that
cannot be fetched, a malformed file) leaves the week open so a later attempt within the grace
window can still send it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Collection
from pathlib import Path

from weekly_mailer.articles import Article, load_article
from weekly_mailer.articles.feed import fetch, parse_feed
from weekly_mailer.errors import ArticleError, NoArticleError
from weekly_mailer.issues.keys import feed_key, file_key, file_key_name, is_feed_source

__all__ = [
    "NoArticleError",
    "WeekArticle",
    "feed_key",
    "file_key",
    "resolve_week_article",
]

ARTICLE_SUFFIXES = (".md", ".markdown", ".txt")
_DATED = re.compile(r"^(\d{4}-\d{2}-\d{2})")




@dataclasses.dataclass(frozen=True, slots=True)
class WeekArticle:
    """The article chosen for a week, where it came from, and its key for "already sent"."""

    article: Article
    source: str
    source_key: str


def resolve_week_article(
    source: str,
    *,
    send_week: dt.date,
    since: dt.datetime,
    until: dt.datetime,
    sent_keys: Collection[str],
) -> WeekArticle:
    """The article for ``send_week`` (see the module docstring for the rule)."""
    if not source.strip():
        raise NoArticleError("article_source is not set")
    if is_feed_source(source):
        return _from_feed(source, since=since, until=until, sent_keys=sent_keys)
    path = Path(source)
    if path.is_dir():
        return _from_folder(path, send_week=send_week, sent_keys=sent_keys)
    if not path.exists():
        raise ArticleError(f"article_source: {source} does not exist")
    key = file_key(path)
    if key in sent_keys:
        raise NoArticleError(f"{path.name} was already sent (no new content)")
    return WeekArticle(load_article(str(path)), str(path), key)


def _from_feed(
    source: str, *, since: dt.datetime, until: dt.datetime, sent_keys: Collection[str]
) -> WeekArticle:
    article = parse_feed(fetch(source), source=source)  # the newest item of the feed
    key = feed_key(article)
    if key in sent_keys:
        raise NoArticleError(f"the newest feed item {article.title!r} was already sent")
    if article.date is not None and not since <= article.date <= until:
        raise NoArticleError(
            f"no new feed item since the last send on {since:%Y-%m-%d %H:%M} UTC "
            f"(the newest, {article.title!r}, is from {article.date:%Y-%m-%d %H:%M} UTC)"
        )
    return WeekArticle(article, source, key)


def _from_folder(folder: Path, *, send_week: dt.date, sent_keys: Collection[str]) -> WeekArticle:
    candidates = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix.lower() in ARTICLE_SUFFIXES
        and not p.name.startswith((".", "_"))
    )
    # A folder file was sent when a file of its name was (older databases stored the path).
    sent_names = {name for name in map(file_key_name, sent_keys) if name is not None}

    def was_sent(path: Path) -> bool:
        return path.name[:400] in sent_names or str(path)[:500] in sent_keys

    week = send_week.isoformat()
    for path in candidates:
        if path.name.startswith(week):
            if was_sent(path):
                raise NoArticleError(f"{path.name} was already sent")
            return _week_file(path)
    undated = [p for p in candidates if not _DATED.match(p.name)]
    fresh = [p for p in undated if not was_sent(p)]
    if not fresh:
        raise NoArticleError(
            f"no file for {week} in {folder} (name it {week}-title.md) and no undated file "
            "left to send"
        )
    newest = max(fresh, key=lambda p: (p.stat().st_mtime, p.name))
    return _week_file(newest)


def _week_file(path: Path) -> WeekArticle:
    return WeekArticle(load_article(str(path)), str(path), file_key(path))
