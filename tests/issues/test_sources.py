"""The week's article from article_source: feed, folder or one file (docs/operations.md)."""

from __future__ import annotations

import datetime as dt
import os
from email.utils import format_datetime
from pathlib import Path

import pytest

from weekly_mailer.errors import ArticleError
from weekly_mailer.issues import file_key
from weekly_mailer.issues.sources import NoArticleError, resolve_week_article

UTC = dt.UTC
WEEK = dt.date(2026, 11, 25)
FIRE = dt.datetime(2026, 11, 26, 2, tzinfo=UTC)  # Wednesday 18:00 PST
SINCE = FIRE - dt.timedelta(days=7)


def md(title: str) -> str:
    return f"---\ntitle: {title}\nauthor: Robin Field\n---\nA paragraph about {title.lower()}.\n"


def rss(*items: tuple[str, dt.datetime]) -> str:
    body = "".join(
        f"<item><title>{t}</title><link>https://blog.example.org/{t.replace(' ', '-')}</link>"
        f"<pubDate>{format_datetime(when)}</pubDate>"
        f"<description>&lt;p&gt;About {t}.&lt;/p&gt;</description></item>"
        for t, when in items
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Blog</title>'
        f"<link>https://blog.example.org/</link><description>d</description>{body}"
        "</channel></rss>"
    )


def resolve(source: Path | str, sent: set[str] | None = None):  # type: ignore[no-untyped-def]
    return resolve_week_article(
        str(source), send_week=WEEK, since=SINCE, until=FIRE, sent_keys=sent or set()
    )


def test_feed_newest_item_of_the_week(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text(
        rss(("Hedges", FIRE - dt.timedelta(days=2)), ("Ponds", FIRE - dt.timedelta(days=4)))
    )
    chosen = resolve(feed)
    assert chosen.article.title == "Hedges"
    assert chosen.source_key == "https://blog.example.org/Hedges"
    assert chosen.source == str(feed)
    with pytest.raises(NoArticleError, match="'Hedges' was already sent"):
        resolve(feed, {chosen.source_key})


def test_feed_without_a_new_item_skips(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text(rss(("Ponds", SINCE - dt.timedelta(hours=1))))
    with pytest.raises(NoArticleError, match="no new feed item since the last send"):
        resolve(feed)


def test_unreadable_feed_is_not_a_skip(tmp_path: Path) -> None:
    with pytest.raises(ArticleError) as info:
        resolve(tmp_path / "missing.xml")
    assert not isinstance(info.value, NoArticleError)
    bad = tmp_path / "bad.xml"
    bad.write_text("this is not a feed")
    with pytest.raises(ArticleError) as info:
        resolve(bad)
    assert not isinstance(info.value, NoArticleError)


def test_folder_prefers_the_weeks_dated_file(tmp_path: Path) -> None:
    (tmp_path / "2026-11-18-last.md").write_text(md("Last week"))
    (tmp_path / "2026-11-25-hedges.md").write_text(md("Hedges"))
    (tmp_path / "2026-12-02-next.md").write_text(md("Next week"))
    (tmp_path / "undated.md").write_text(md("Undated"))
    chosen = resolve(tmp_path)
    assert chosen.article.title == "Hedges"
    assert chosen.source_key == file_key(tmp_path / "2026-11-25-hedges.md")
    with pytest.raises(NoArticleError, match="2026-11-25-hedges.md was already sent"):
        resolve(tmp_path, {chosen.source_key})
    # Edited after it was sent: still sent (a folder file counts by name), and a database
    # from before file keys (which stored the path) is understood too.
    (tmp_path / "2026-11-25-hedges.md").write_text(md("Hedges, corrected"))
    with pytest.raises(NoArticleError, match="2026-11-25-hedges.md was already sent"):
        resolve(tmp_path, {chosen.source_key})
    with pytest.raises(NoArticleError, match="2026-11-25-hedges.md was already sent"):
        resolve(tmp_path, {str(tmp_path / "2026-11-25-hedges.md")})


def test_folder_falls_back_to_the_newest_undated_file_not_sent(tmp_path: Path) -> None:
    (tmp_path / "2026-12-02-next.md").write_text(md("Next week"))  # waits for its week
    older, newer = tmp_path / "ponds.md", tmp_path / "hedges.markdown"
    older.write_text(md("Ponds"))
    newer.write_text(md("Hedges"))
    (tmp_path / ".draft.md").write_text(md("Draft"))
    (tmp_path / "_notes.md").write_text(md("Notes"))
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    os.utime(older, (1_700_000_000, 1_700_000_000))
    os.utime(newer, (1_700_000_100, 1_700_000_100))
    assert resolve(tmp_path).source_key == file_key(newer)
    assert resolve(tmp_path, {file_key(newer)}).source == str(older)
    assert resolve(tmp_path, {str(newer)}).source == str(older)  # a path key (older database)
    with pytest.raises(NoArticleError, match="no file for 2026-11-25 in .* no undated file"):
        resolve(tmp_path, {file_key(newer), file_key(older)})


def test_single_file_counts_as_new_when_its_content_changes(tmp_path: Path) -> None:
    path = tmp_path / "issue.md"
    path.write_text(md("Hedges"))
    first = resolve(path)
    assert first.article.title == "Hedges"
    with pytest.raises(NoArticleError, match="issue.md was already sent"):
        resolve(path, {first.source_key})
    path.write_text(md("Ponds"))
    second = resolve(path, {first.source_key})
    assert second.article.title == "Ponds"
    assert second.source_key != first.source_key


def test_missing_or_empty_source(tmp_path: Path) -> None:
    with pytest.raises(NoArticleError, match="article_source is not set"):
        resolve("")
    with pytest.raises(ArticleError, match="does not exist") as info:
        resolve(tmp_path / "nope.md")
    assert not isinstance(info.value, NoArticleError)
