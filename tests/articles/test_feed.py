"""RSS and Atom feeds: the week's newest item, sanitised, by path and by (loopback) URL."""

from __future__ import annotations

import datetime as dt
import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from weekly_mailer.articles import load_article
from weekly_mailer.compose import Recipient
from weekly_mailer.config import Settings
from weekly_mailer.errors import ArticleError
from weekly_mailer.issues import compose

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
<title>Example blog</title><link>https://blog.example.org/</link><description>d</description>
<item><title>Older post</title><link>https://blog.example.org/older</link>
<pubDate>Wed, 11 Nov 2026 17:00:00 -0800</pubDate><description>Old body.</description></item>
<item><title>This week &amp; more</title><link>https://blog.example.org/this-week</link>
<dc:creator>Sam Rivera</dc:creator><category>Water</category><category>Asia</category>
<pubDate>Mon, 16 Nov 2026 09:30:00 -0800</pubDate>
<description><![CDATA[<p>Hello <b>readers</b>.</p><script>alert(1)</script>
<p><a href="javascript:evil()" onmouseover="x()">bad link</a>
<img src="https://blog.example.org/a.png" onerror="x()"></p>]]></description></item>
<item><title>Future post</title><link>https://blog.example.org/future</link>
<pubDate>Tue, 24 Nov 2026 09:00:00 -0800</pubDate><description>Next week.</description></item>
</channel></rss>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom blog</title><id>urn:x</id>
<updated>2026-11-18T10:00:00Z</updated>
<entry><title>Atom entry</title><id>urn:1</id><link href="https://atom.example.org/1"/>
<published>2026-11-18T10:00:00Z</published><updated>2026-11-18T10:00:00Z</updated>
<author><name>Kim Park</name></author>
<summary>Short summary.</summary>
<content type="html">&lt;p&gt;Atom &lt;em&gt;body&lt;/em&gt;.&lt;/p&gt;&lt;iframe src="https://x"&gt;&lt;/iframe&gt;</content>
</entry></feed>
"""

WEEK_START = dt.datetime(2026, 11, 12, 2, 0, tzinfo=dt.UTC)
WEEK_END = dt.datetime(2026, 11, 19, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def rss_file(tmp_path: Path) -> Path:
    path = tmp_path / "feed.rss"
    path.write_text(RSS, encoding="utf-8")
    return path


def test_rss_item_of_the_week_sanitised(rss_file: Path) -> None:
    article = load_article(str(rss_file), week_start=WEEK_START, week_end=WEEK_END)
    assert article.title == "This week & more"
    assert article.date == dt.datetime(2026, 11, 16, 17, 30, tzinfo=dt.UTC)
    assert article.author == "Sam Rivera"
    assert article.canonical_url == "https://blog.example.org/this-week"
    assert article.tags == {"Tags": ["Water", "Asia"]}
    assert article.summary == "Hello readers. bad link"
    assert "<b>readers</b>" in article.body_html
    for bad in ("script", "alert", "javascript", "onmouseover", "onerror"):
        assert bad not in article.body_html
    assert '<img src="https://blog.example.org/a.png">' in article.body_html


def test_rss_newest_without_window(rss_file: Path) -> None:
    assert load_article(str(rss_file)).title == "Future post"


def test_rss_empty_week_is_an_error(rss_file: Path) -> None:
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    with pytest.raises(ArticleError, match="no item published between 2026-12-01"):
        load_article(str(rss_file), week_start=start, week_end=start + dt.timedelta(days=7))


def test_atom_entry(tmp_path: Path) -> None:
    path = tmp_path / "feed.atom"
    path.write_text(ATOM, encoding="utf-8")
    article = load_article(str(path))
    assert article.title == "Atom entry"
    assert article.author == "Kim Park"
    assert article.summary == "Short summary."
    assert article.body_html == "<p>Atom <em>body</em>.</p>"
    assert article.canonical_url == "https://atom.example.org/1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("this is not xml <<<", "not a readable RSS or Atom feed"),
        ('<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>',
         "the feed has no items"),
        ('<?xml version="1.0"?><rss version="2.0"><channel><item><description>b</description>'
         "</item></channel></rss>", "has no title"),
    ],
)  # fmt: skip
def test_bad_feeds(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ArticleError, match=message):
        load_article(str(path))


def test_missing_feed_file(tmp_path: Path) -> None:
    with pytest.raises(ArticleError, match="cannot read the feed"):
        load_article(str(tmp_path / "nope.xml"))


@pytest.fixture
def feed_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/feed.xml":
                body = RSS.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_feed_by_url(feed_server: str) -> None:
    article = load_article(f"{feed_server}/feed.xml", week_start=WEEK_START, week_end=WEEK_END)
    assert article.title == "This week & more"
    with pytest.raises(ArticleError, match="the server answered 404"):
        load_article(f"{feed_server}/missing")


UNSAFE_LINK_RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Blog</title><link>https://blog.example.org/</link>
<description>d</description>
<item><title>A week with a bad link</title><link>{link}</link>
<pubDate>Mon, 16 Nov 2026 09:30:00 -0800</pubDate>
<description><![CDATA[<p>The body of the week.</p>]]></description></item>
</channel></rss>
"""


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(document.cookie)",
        " JavaScript:alert(1)",
        "data:text/html,hi",
        "/relative/post",
        "https://",
        "https://blog.example.org/a b",
    ],
)
def test_an_unsafe_item_link_is_dropped_and_the_week_still_goes_out(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture, link: str
) -> None:
    path = tmp_path / "feed.rss"
    path.write_text(UNSAFE_LINK_RSS.format(link=link), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="weekly_mailer.articles"):
        article = load_article(str(path), week_start=WEEK_START, week_end=WEEK_END)
    assert article.canonical_url == ""
    assert any(
        "article link" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records
    )
    composed = compose(article, settings, send_week=dt.date(2026, 11, 18))  # no ComposeError
    html = (
        composed.message_for(
            Recipient(1, "ann@example.org", "Ann", "https://news.example.org/unsubscribe/t"),
            message_id="<a@b>",
            date=dt.datetime(2026, 11, 18, 10, tzinfo=dt.UTC),
        )
        .decode("ascii")
        .replace("=\r\n", "")
    )
    assert "The body of the week." in html
    assert "Read this article on the web" not in html
    assert "javascript" not in html.lower()


def test_an_absolute_http_item_link_is_kept(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "feed.rss"
    path.write_text(UNSAFE_LINK_RSS.format(link="http://blog.example.org/p?x=1"), encoding="utf-8")
    article = load_article(str(path))
    assert article.canonical_url == "http://blog.example.org/p?x=1"
    composed = compose(article, settings, send_week=dt.date(2026, 11, 18))
    assert not composed.lint.errors


RELATIVE_RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Blog</title><link>https://blog.example.org/</link>
<description>d</description>
<item><title>{title}</title><link>https://blog.example.org/posts/x</link>
<pubDate>Mon, 16 Nov 2026 09:30:00 -0800</pubDate>
<description><![CDATA[<p>See <a href="/about">about us</a> and <a href="more">more</a>.</p>
<p><img src="/rel.jpg" alt="x"></p>]]></description></item>
</channel></rss>
"""


def _html_of(article: object, settings: Settings) -> tuple[str, list[str]]:
    composed = compose(article, settings, send_week=dt.date(2026, 11, 18))  # type: ignore[arg-type]
    html = (
        composed.message_for(
            Recipient(1, "ann@example.org", "Ann", "https://news.example.org/unsubscribe/t"),
            message_id="<a@b>",
            date=dt.datetime(2026, 11, 18, 10, tzinfo=dt.UTC),
        )
        .decode("ascii")
        .replace("=\r\n", "")
        .replace("=3D", "=")
    )
    return html, list(composed.lint.errors)


def test_relative_links_in_an_item_resolve_against_its_link(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "feed.rss"
    path.write_text(RELATIVE_RSS.format(title="Relative week"), encoding="utf-8")
    article = load_article(str(path), week_start=WEEK_START, week_end=WEEK_END)
    html, errors = _html_of(article, settings)
    assert 'href="https://blog.example.org/about"' in html
    assert 'href="https://blog.example.org/posts/more"' in html
    assert 'src="https://blog.example.org/rel.jpg"' in html
    assert not [e for e in errors if "relative" in e]


def test_relative_links_without_any_base_are_dropped(
    tmp_path: Path,
) -> None:
    rss = RELATIVE_RSS.format(title="No link").replace(
        "<link>https://blog.example.org/posts/x</link>", ""
    )
    path = tmp_path / "feed.rss"
    path.write_text(rss, encoding="utf-8")
    # a file feed has no base: the relative links are dropped, never sent relative
    article = load_article(str(path))
    assert 'href="/about"' not in article.body_html
    assert 'src="/rel.jpg"' not in article.body_html
    assert "about us" in article.body_html


def test_relative_links_resolve_against_the_feed_url(
    tmp_path: Path, settings: Settings, served_feed: tuple[str, list[str]]
) -> None:
    url, bodies = served_feed
    bodies.append(
        RELATIVE_RSS.format(title="Served").replace(
            "<link>https://blog.example.org/posts/x</link>", ""
        )
    )
    article = load_article(f"{url}/blog/feed.xml")
    assert f'href="{url}/about"' in article.body_html
    assert f'src="{url}/rel.jpg"' in article.body_html
    _, errors = _html_of(article, settings)
    assert not [e for e in errors if "relative" in e]


@pytest.fixture
def served_feed() -> Iterator[tuple[str, list[str]]]:
    bodies: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = bodies[-1].encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_a_plain_text_title_keeps_its_angle_brackets(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "feed.rss"
    path.write_text(RELATIVE_RSS.format(title="Harbour &lt;news&gt; &amp; more"), encoding="utf-8")
    article = load_article(str(path))
    assert article.title == "Harbour <news> & more"
    html, _ = _html_of(article, settings)
    assert "Harbour &lt;news&gt; &amp; more" in html
    assert "Subject: Harbour <news> & more" in html
    assert "<news>" not in html.split("text/html", 1)[1]


def test_an_html_title_loses_its_tags(tmp_path: Path) -> None:
    path = tmp_path / "feed.atom"
    path.write_text(
        ATOM.replace("<title>Atom entry</title>", '<title type="html">&lt;b&gt;Bold&lt;/b&gt; '
                     "entry &amp;amp; more</title>"),
        encoding="utf-8",
    )  # fmt: skip
    assert load_article(str(path)).title == "Bold entry & more"
