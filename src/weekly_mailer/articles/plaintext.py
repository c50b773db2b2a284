"""The blog's plain-text export (a web page saved as text, page chrome and all) → Article.

The shape, as exported: an optional masthead line, the title, the date, ``By <author>``, the body
paragraphs, the author's bio line, ``Related locations: …`` / ``Related programs: …`` lines, then
page chrome ("Submit a Comment", the comment-form notice, "About our blog", addresses) which is
dropped. Paragraphs are separated by blank lines.
"""

from __future__ import annotations

import datetime as dt
import html
import re

from weekly_mailer.articles.model import Article
from weekly_mailer.articles.sanitise import make_summary, one_line, repair_text, sanitise_html
from weekly_mailer.errors import ArticleError

# A block starting with one of these begins the page chrome: it and everything after is dropped.
CHROME_MARKERS = (
    "submit a comment",
    "leave a reply",
    "leave a comment",
    "your email address will not be published",
    "about our blog",
    "about the blog",
    "about this blog",
    "share this:",
    "mailing address",
    "related posts",
)
DATE_FORMATS = ("%B %d, %Y", "%b %d, %Y", "%B %d %Y", "%d %B %Y", "%Y-%m-%d", "%b. %d, %Y")
_BYLINE_RE = re.compile(r"^by\s+(\S.*)$", re.IGNORECASE)
_TAG_LINE_RE = re.compile(r"^((?:related|tags|topics|categories)\b[\w ]{0,40}):\s*(.*)$", re.I)
_ORDINAL_RE = re.compile(r"(\d)(st|nd|rd|th)\b")
_LOOKAHEAD = 6  # the date must be among the first blocks


def parse_date(text: str) -> dt.datetime | None:
    """A date line such as ``November 21, 2007`` as midnight UTC, or ``None``."""
    value = _ORDINAL_RE.sub(r"\1", one_line(text))
    if len(value) > 40:
        return None
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    return None


def _blocks(text: str) -> list[str]:
    blocks = []
    for raw in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in raw.split("\n") if line.strip()]
        if lines:
            blocks.append("\n".join(lines))
    return blocks


def _strip_chrome(blocks: list[str]) -> list[str]:
    for i, block in enumerate(blocks):
        if block.lower().startswith(CHROME_MARKERS):
            return blocks[:i]
    return blocks


def _take_tags(blocks: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    tags: dict[str, list[str]] = {}
    kept = []
    for block in blocks:
        matches = [_TAG_LINE_RE.match(line) for line in block.split("\n")]
        if all(matches):
            for m in matches:
                assert m is not None
                values = [v.strip() for v in m.group(2).split(",") if v.strip()]
                tags.setdefault(one_line(m.group(1)), []).extend(values)
        else:
            kept.append(block)
    return kept, tags


def _is_bio(paragraph: str, author: str) -> bool:
    if not author or len(paragraph) > 600:
        return False
    names = [author] + author.split()[-1:]
    return any(
        re.match(re.escape(n) + r"\b.{0,40}\b(is|was|serves|works)\b", paragraph) for n in names
    )


def parse_plaintext(text: str, *, source: str = "") -> Article:
    """Parse the plain-text export; raises :class:`ArticleError` without a title or body."""
    blocks = _strip_chrome(_blocks(repair_text(text)))
    blocks, tags = _take_tags(blocks)
    if not blocks:
        raise ArticleError(f"{source or 'article'}: the text is empty")

    date: dt.datetime | None = None
    title_at = 0
    for i, block in enumerate(blocks[:_LOOKAHEAD]):
        date = parse_date(block)
        if date is not None:
            if i == 0:
                raise ArticleError(f"{source or 'article'}: no title before the date line")
            title_at = i - 1
            del blocks[i]
            break
    title = one_line(blocks[title_at])
    if "\n" in blocks[title_at] or len(title) > 300:
        raise ArticleError(f"{source or 'article'}: no title (the first block is a paragraph)")
    rest = blocks[title_at + 1 :]

    author = ""
    if rest:
        m = _BYLINE_RE.match(rest[0])
        if m and "\n" not in rest[0] and len(rest[0]) < 200:
            author = one_line(m.group(1))
            rest = rest[1:]

    paragraphs = [one_line(block) for block in rest]
    bio = ""
    if paragraphs and _is_bio(paragraphs[-1], author):
        bio = paragraphs.pop()
    if not paragraphs:
        raise ArticleError(f"{source or 'article'}: the article {title!r} has no body text")

    body = "\n".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs)
    return Article(
        title=title,
        date=date,
        author=author,
        summary=make_summary(paragraphs[0]),
        body_html=sanitise_html(body),
        author_bio=bio,
        tags=tags,
        source=source,
    )
