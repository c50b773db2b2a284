"""HTML sanitising (nh3) and small text helpers shared by the article parsers."""

from __future__ import annotations

import html
import logging
import re
from urllib.parse import urljoin, urlsplit

import nh3

log = logging.getLogger(__name__)

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del", "div", "dl",
    "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
    "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "small", "span", "strong", "sub",
    "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "abbr": {"title"},
    "ol": {"start"},
}
URL_SCHEMES = {"http", "https", "mailto"}

_BLOCK_TAG_RE = re.compile(
    r"</?(?:p|br|div|li|ul|ol|h[1-6]|blockquote|tr|td|th|table|pre|hr|figure|figcaption)\b[^>]*>",
    re.IGNORECASE,
)
_SPACE_RE = re.compile(r"\s+")
_URL_BAD_CHAR_RE = re.compile(r"[\x00-\x20\x7f]")
# Export artefacts: a backslash before a quote or apostrophe, as in "Asia\’s".
_BACKSLASH_QUOTE_RE = re.compile(r"\\+([’‘'\"“”])")
# A closing quote standing alone between spaces was a dash before the export mangled it.
_LONE_QUOTE_DASH_RE = re.compile(r"(?<= )”(?= )")


def _absolute(value: str, base_url: str, *, mailto: bool) -> str | None:
    """``value`` resolved against ``base_url``; ``None`` unless absolute http(s) (or mailto)."""
    try:
        url = urljoin(base_url, value.strip()) if base_url else value.strip()
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") and parts.hostname:
        return url
    if mailto and scheme == "mailto":
        return url
    return None


def sanitise_html(fragment: str, *, base_url: str | None = None) -> str:
    """Only harmless tags, attributes and URL schemes survive; links get ``rel=noopener``.

    With ``base_url`` (a feed item's HTML), relative ``href``/``src`` are resolved against it
    and any that are still not absolute http(s) (or ``mailto:`` links) are dropped.
    """

    def resolve(tag: str, attribute: str, value: str) -> str | None:
        if base_url is None or (tag, attribute) not in (("a", "href"), ("img", "src")):
            return value
        return _absolute(value, base_url, mailto=attribute == "href")

    return nh3.clean(
        fragment,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
        attribute_filter=resolve,
    ).strip()


def html_to_plain(fragment: str) -> str:
    """The text of an HTML fragment on one line (for titles and summaries)."""
    spaced = _BLOCK_TAG_RE.sub(" ", fragment)
    return _SPACE_RE.sub(" ", html.unescape(nh3.clean(spaced, tags=set()))).strip()


def normalise_newlines(text: str) -> str:
    """LF line endings and no byte-order mark; nothing else changes (Markdown's own text)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")


def repair_text(text: str) -> str:
    """Undo the plain-text export's artefacts (``\\’``; a lone ``”`` between spaces for a dash);
    LF endings. For that export only: in Markdown a backslash before a quote is the author's."""
    text = normalise_newlines(text)
    text = _LONE_QUOTE_DASH_RE.sub("—", text)
    return _BACKSLASH_QUOTE_RE.sub(r"\1", text)


def one_line(text: str) -> str:
    """Whitespace collapsed to single spaces."""
    return _SPACE_RE.sub(" ", text).strip()


def make_summary(text: str, limit: int = 200) -> str:
    """The first ``limit`` characters of ``text``, cut at a word, with an ellipsis if cut."""
    text = one_line(text)
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:—–- ")
    return cut + "…"


def http_url(value: str, *, where: str) -> str:
    """``value`` when it is an absolute http(s) URL, else ``""`` (and a warning in the log).

    For an article's canonical link, which ends up in an ``href``: a ``javascript:`` or relative
    link is dropped here, so the issue goes out without it rather than failing the lint.
    """
    url = value.strip()
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if ok and not _URL_BAD_CHAR_RE.search(url):
        return url
    log.warning("%s: article link %r dropped: not an absolute http(s) URL", where, url[:200])
    return ""
