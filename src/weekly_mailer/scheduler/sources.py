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
issue so far: a feed item's link (as ``weekly-mailer send`` stores it), a folder file's path,
a single file's name and content hash (so a file edited for a new week counts as new).

No article is :class:`NoArticleError`: the week is then recorded as skipped with its message as
the reason. Any other :class:`~weekly_mailer.errors.ArticleError` (a feed that
cannot be fetched, a malformed file) leaves the week open so a later attempt within the grace
window can still send it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Collection
from pathlib import Path

from ..articles import Article, load_article
from ..articles.feed import fetch, is_url, parse_feed
from ..errors import ArticleError

ARTICLE_SUFFIXES = (".md", ".markdown", ".txt")
FEED_SUFFIXES = (".xml", ".rss", ".atom")
_DATED = re.compile(r"^(\d{4}-\d{2}-\d{2})")


class NoArticleError(ArticleError):
    """There is no new article for this week: the week is recorded as skipped."""


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
    if is_url(source) or source.lower().endswith(FEED_SUFFIXES):
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


def feed_key(article: Article) -> str:
    """A feed item's identity: its link (as ``send`` stores it), else its title and date."""
    when = article.date.isoformat() if article.date else ""
    return (article.canonical_url or f"{article.title}|{when}")[:500]


def file_key(path: Path) -> str:
    """A single file's identity: its name and a hash of its content (edited = new)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"file:{path.name[:400]}:{digest}"


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
    week = send_week.isoformat()
    for path in candidates:
        if path.name.startswith(week):
            key = str(path)[:500]
            if key in sent_keys:
                raise NoArticleError(f"{path.name} was already sent")
            return WeekArticle(load_article(str(path)), str(path), key)
    undated = [p for p in candidates if not _DATED.match(p.name)]
    fresh = [p for p in undated if str(p)[:500] not in sent_keys]
    if not fresh:
        raise NoArticleError(
            f"no file for {week} in {folder} (name it {week}-title.md) and no undated file "
            "left to send"
        )
    newest = max(fresh, key=lambda p: (p.stat().st_mtime, p.name))
    return WeekArticle(load_article(str(newest)), str(newest), str(newest)[:500])
