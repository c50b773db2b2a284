"""An RSS 2.0 or Atom feed (path or URL) → the Article of its newest item in the send week.

The item's HTML is sanitised with nh3 before anything else sees it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import http.client
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import feedparser

from weekly_mailer import __version__
from weekly_mailer.articles.model import Article
from weekly_mailer.articles.sanitise import (
    html_to_plain,
    http_url,
    make_summary,
    one_line,
    sanitise_html,
)
from weekly_mailer.errors import ArticleError

FETCH_TIMEOUT = 30.0  # seconds per network read
FETCH_DEADLINE = 60.0  # seconds for the whole fetch (tests lower it)
MAX_FEED_BYTES = 20 * 1024 * 1024


def is_url(source: str) -> bool:
    """Whether ``source`` is an http(s) URL rather than a path."""
    return source.lower().startswith(("http://", "https://"))


def fetch(source: str) -> bytes:
    """The bytes of a feed file or URL; raises :class:`ArticleError` with the reason.

    A URL gets :data:`FETCH_TIMEOUT` seconds per network read and :data:`FETCH_DEADLINE` seconds
    in all: a server that drips a byte at a time cannot keep ``send`` or ``preview`` waiting.
    """
    if is_url(source):
        return _fetch_url(source, deadline=FETCH_DEADLINE)
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ArticleError(f"{source}: cannot read the feed: {exc.strerror}") from exc


def _fetch_url(source: str, *, deadline: float) -> bytes:
    outcome: list[bytes | ArticleError] = []
    stop = threading.Event()
    worker = threading.Thread(
        target=lambda: outcome.append(_download(source, time.monotonic() + deadline, stop)),
        name="feed-fetch",
        daemon=True,  # a server stuck mid-headers cannot keep the process alive
    )
    worker.start()
    worker.join(deadline + 1.0)
    stop.set()
    if not outcome:
        raise ArticleError(f"{source}: cannot fetch the feed: no complete answer in {deadline:g} s")
    result = outcome[0]
    if isinstance(result, ArticleError):
        raise result
    return result


def _download(source: str, until: float, stop: threading.Event) -> bytes | ArticleError:
    """The body, or the :class:`ArticleError` to raise (this runs in the fetch thread)."""
    request = urllib.request.Request(source, headers={"User-Agent": f"weekly-mailer/{__version__}"})
    timeout = max(0.1, min(FETCH_TIMEOUT, until - time.monotonic()))
    chunks: list[bytes] = []
    size = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            while size <= MAX_FEED_BYTES:
                if stop.is_set() or time.monotonic() > until:
                    return ArticleError(
                        f"{source}: cannot fetch the feed: no complete answer in "
                        f"{FETCH_DEADLINE:g} s"
                    )
                chunk = response.read1(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except urllib.error.HTTPError as exc:
        return ArticleError(f"{source}: the server answered {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return ArticleError(f"{source}: cannot fetch the feed: {reason}")
    except (http.client.HTTPException, ValueError) as exc:  # a garbage status line, a bad URL
        reason = one_line(f"{type(exc).__name__}: {exc}")[:200]
        return ArticleError(f"{source}: cannot fetch the feed: not an HTTP answer ({reason})")
    if size > MAX_FEED_BYTES:
        return ArticleError(f"{source}: the feed is larger than {MAX_FEED_BYTES} bytes")
    return b"".join(chunks)


def _when(entry: Any) -> dt.datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return dt.datetime.fromtimestamp(calendar.timegm(value), tz=dt.UTC)
    return None


def _body(entry: Any) -> str:
    for content in entry.get("content") or []:
        if content.get("value") and "html" in content.get("type", "text/html"):
            return str(content["value"])
    for content in entry.get("content") or []:
        if content.get("value"):
            return "<p>" + str(content["value"]) + "</p>"
    return str(entry.get("summary") or entry.get("description") or "")


def _title(entry: Any) -> str:
    """The item's title as plain text: tags are stripped only when the feed says it is HTML."""
    raw = str(entry.get("title") or "")
    kind = str((entry.get("title_detail") or {}).get("type") or "text/plain")
    return one_line(html_to_plain(raw) if "html" in kind else raw)


def _tags(entry: Any) -> dict[str, list[str]]:
    terms = [one_line(t.get("label") or t.get("term") or "") for t in entry.get("tags") or []]
    terms = [t for t in terms if t]
    return {"Tags": terms} if terms else {}


def parse_feed(
    data: bytes,
    *,
    source: str = "",
    week_start: dt.datetime | None = None,
    week_end: dt.datetime | None = None,
) -> Article:
    """The newest item published within ``[week_start, week_end)`` (or the newest of all)."""
    where = source or "feed"
    parsed = feedparser.parse(data, sanitize_html=False, resolve_relative_uris=True)
    if parsed.get("bozo") and not parsed.get("entries"):
        reason = one_line(str(parsed.get("bozo_exception", "not XML")))
        raise ArticleError(f"{where}: not a readable RSS or Atom feed ({reason})")
    if not parsed.get("version") and not parsed.get("entries"):
        raise ArticleError(f"{where}: not an RSS or Atom feed")
    entries = [(e, _when(e)) for e in parsed.entries]
    if not entries:
        raise ArticleError(f"{where}: the feed has no items")
    if week_start is not None or week_end is not None:
        lo = week_start or dt.datetime.min.replace(tzinfo=dt.UTC)
        hi = week_end or dt.datetime.max.replace(tzinfo=dt.UTC)
        entries = [(e, w) for e, w in entries if w is not None and lo <= w < hi]
        if not entries:
            raise ArticleError(
                f"{where}: no item published between {lo:%Y-%m-%d %H:%M} and "
                f"{hi:%Y-%m-%d %H:%M} UTC"
            )
    dated = [(e, w) for e, w in entries if w is not None]
    entry, when = max(dated, key=lambda ew: ew[1]) if dated else entries[0]

    title = _title(entry)
    if not title:
        raise ArticleError(f"{where}: the newest item has no title")
    canonical_url = http_url(str(entry.get("link") or ""), where=where)
    base_url = canonical_url or (source if is_url(source) else "")
    body_html = sanitise_html(_body(entry), base_url=base_url)
    if not html_to_plain(body_html):
        raise ArticleError(f"{where}: the item {title!r} has no body text")
    summary_html = str(entry.get("summary") or "")
    summary = make_summary(html_to_plain(summary_html) or html_to_plain(body_html))
    return Article(
        title=title,
        date=when,
        author=one_line(str(entry.get("author") or "")),
        summary=summary,
        body_html=body_html,
        tags=_tags(entry),
        canonical_url=canonical_url,
        source=source,
    )
