"""What "already sent" compares: the source key of an article, the same for every path."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from weekly_mailer.articles import FEED_SUFFIXES
from weekly_mailer.articles.feed import is_url

if TYPE_CHECKING:
    from weekly_mailer.articles import Article


def is_feed_source(source: str) -> bool:
    """Whether ``source`` names a feed (a URL, or a ``.xml``/``.rss``/``.atom`` file)."""
    return is_url(source) or source.lower().endswith(FEED_SUFFIXES)


def feed_key(article: Article) -> str:
    """A feed item's identity: its link, else its title and date."""
    when = article.date.isoformat() if article.date else ""
    return (article.canonical_url or f"{article.title}|{when}")[:500]


def file_key(path: Path) -> str:
    """A file's identity: its name and a hash of its content (an edited file is new)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"file:{path.name[:400]}:{digest}"


def file_key_name(key: str) -> str | None:
    """The file name inside a :func:`file_key` (``None`` for any other key)."""
    if not key.startswith("file:"):
        return None
    return key[len("file:") :].rpartition(":")[0]


def source_key(source: str, article: Article) -> str:
    """The ``Issue.source_key`` of an article read from ``source``: what "already sent" compares.

    The one definition used by ``send``, ``demo`` and the daemon, so that an article sent by one
    of them is recognised by the others: a feed item is :func:`feed_key`, a file (given alone
    or found in a folder) is :func:`file_key`.
    """
    if source and is_feed_source(source):
        return feed_key(article)
    path = Path(source or article.source)
    try:
        return file_key(path)
    except OSError:  # not a readable file (an article built in memory): its name will do
        return (source or article.source or article.canonical_url)[:500]
