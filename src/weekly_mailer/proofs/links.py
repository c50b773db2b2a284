"""The link check: every link of an issue tried, the ones that do not work listed.

Each ``http``/``https`` link is asked with ``HEAD``, then with ``GET`` where the server refuses
``HEAD`` (405, 501, or a 4xx/5xx some servers give HEAD alone), following redirects, with a
timeout, at most ``workers`` at once (urllib in a thread pool: no new dependency). A link is
broken when the last answer is a 4xx or 5xx, the host is unknown, the connection fails or the
timeout passes. Links to our own site (under ``base_url``: the week's archive page exists only
once the week is sent; unsubscribe and manage are placeholders before personalising) and
``mailto:`` are not tried.
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from urllib.parse import urlsplit

USER_AGENT = "weekly-mailer link check (+https://github.com/weekly-mailer)"
RETRY_WITH_GET = {403, 404, 405, 406, 429, 500, 501, 503}


@dataclasses.dataclass(frozen=True, slots=True)
class BrokenLink:
    url: str
    problem: str  # "404 Not Found", "unknown host", "timed out after 10s", …

    def line(self) -> str:
        return f"{self.url}: {self.problem}"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "area"):
            for name, value in attrs:
                if name == "href" and value:
                    self.links.append(value.strip())


def links_of(html: str, *, own: str = "") -> list[str]:
    """The distinct http(s) links of an HTML document, in order (placeholders, and links under
    ``own``, our ``base_url``, left out)."""
    parser = _Links()
    parser.feed(html)
    parser.close()
    seen: dict[str, None] = {}
    for url in parser.links:
        if urlsplit(url).scheme.lower() not in ("http", "https") or "{{" in url:
            continue
        if own and (url.rstrip("/") == own or url.startswith(own + "/")):
            continue
        seen.setdefault(url, None)
    return list(seen)


def _ask(url: str, method: str, timeout: float) -> int:
    request = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def check_link(url: str, *, timeout: float = 10.0) -> BrokenLink | None:
    """``None`` when the link works, else what is wrong with it."""
    try:
        status = _ask(url, "HEAD", timeout)
        if status in RETRY_WITH_GET:
            status = _ask(url, "GET", timeout)
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, socket.gaierror):
            return BrokenLink(url, "unknown host")
        if isinstance(reason, TimeoutError | socket.timeout):
            return BrokenLink(url, f"timed out after {timeout:g}s")
        return BrokenLink(url, f"cannot connect ({reason})")
    except TimeoutError:
        return BrokenLink(url, f"timed out after {timeout:g}s")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return BrokenLink(url, f"cannot connect ({exc.__class__.__name__}: {exc})")
    if status >= 400:
        phrase = http.client.responses.get(status, "")
        return BrokenLink(url, f"{status} {phrase}".strip())
    return None


def check_links(
    urls: list[str], *, timeout: float = 10.0, workers: int = 8
) -> list[BrokenLink]:
    """The broken ones of ``urls``, in their order (at most ``workers`` asked at once)."""
    if not urls:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(urls)))) as pool:
        results = list(pool.map(lambda u: check_link(u, timeout=timeout), urls))
    return [r for r in results if r is not None]
