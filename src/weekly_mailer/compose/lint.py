"""Lint the composed issue: what would be clipped, broken or non-compliant in an inbox.

Errors are hard failures (``send`` refuses to go on); warnings are shown by ``preview``.
"""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser
from urllib.parse import urlsplit

from weekly_mailer.compose import placeholders as ph

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail clips messages whose HTML is larger than about 102 KB
SIZE_WARNING_BYTES = 90 * 1024
_TYPICAL = {
    ph.NAME: "A" * 30,
    ph.EMAIL: "a" * 40,
    ph.UNSUBSCRIBE_URL: "h" * 160,
    ph.MANAGE_URL: "h" * 160,
}
_LINK_SCHEMES = ("http", "https", "mailto", "tel")


@dataclasses.dataclass(frozen=True)
class LintReport:
    """The findings: ``errors`` stop a send (``hard_failure``), ``warnings`` do not."""

    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    html_bytes: int = 0

    @property
    def hard_failure(self) -> bool:
        return bool(self.errors)

    def lines(self) -> list[str]:
        """One human line per finding, errors first; ``OK`` when there is none."""
        out = [f"error: {e}" for e in self.errors] + [f"warning: {w}" for w in self.warnings]
        return out or [f"OK: no problems found (HTML {self.html_bytes / 1024:.1f} KB)"]

    def __str__(self) -> str:
        return "\n".join(self.lines())


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str | None] = []
        self.images: list[dict[str, str | None]] = []
        self.headings: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HEADINGS:
            self.headings.append("")
            self._in_heading = True
        elif tag == "a":
            self.links.append(dict(attrs).get("href"))
        elif tag == "img":
            self.images.append(dict(attrs))


    def handle_endtag(self, tag: str) -> None:
        if tag in _HEADINGS:
            self._in_heading = False

    def handle_data(self, data: str) -> None:
        if self._in_heading:
            self.headings[-1] += data


_HEADINGS = ("h1", "h2", "h3")


def _same(text: str) -> str:
    return " ".join(text.split()).casefold()


def _short(url: str) -> str:
    return url if len(url) <= 60 else url[:57] + "…"


def lint_issue(html: str, text: str, *, postal_address: str = "", title: str = "") -> LintReport:
    """Check the composed HTML and text (with their placeholder markers)."""
    errors: list[str] = []
    warnings: list[str] = []
    size = len(html.encode("utf-8"))
    for marker, typical in _TYPICAL.items():
        size += html.count(marker) * (len(typical) - len(marker))
    if size > GMAIL_CLIP_BYTES:
        errors.append(f"the HTML is {size / 1024:.0f} KB: Gmail clips messages over about 102 KB")
    elif size > SIZE_WARNING_BYTES:
        warnings.append(f"the HTML is {size / 1024:.0f} KB, close to Gmail's 102 KB clipping")

    scanner = _Scanner()
    scanner.feed(html)
    scanner.close()
    for href in scanner.links:
        if href is None:
            continue
        value = href.strip()
        if value in ph.BODY_MARKERS:
            continue
        if not value or value == "#":
            errors.append("a link has an empty address (href)")
        elif urlsplit(value).scheme.lower() not in _LINK_SCHEMES:
            errors.append(f"a link is relative or of an unsupported kind: {_short(value)!r}")
    for image in scanner.images:
        src = (image.get("src") or "").strip()
        if "alt" not in image:
            warnings.append(f"an image has no alt text: {_short(src)!r}")
        if not src or urlsplit(src).scheme.lower() not in ("http", "https"):
            errors.append(f"an image's address is missing or relative: {_short(src)!r}")
    if title and sum(_same(h) == _same(title) for h in scanner.headings) > 1:
        warnings.append(
            f"the title {title!r} is printed twice: the article's body repeats it as a heading"
        )
    if ph.UNSUBSCRIBE_URL not in scanner.links:
        errors.append("the HTML has no unsubscribe link")
    if ph.UNSUBSCRIBE_URL not in text:
        errors.append("the text version has no unsubscribe link")
    if not text.strip():
        errors.append("the text version is empty")
    if not postal_address:
        warnings.append("postal_address is not set: anti-spam laws want one in every issue")
    return LintReport(errors=tuple(errors), warnings=tuple(warnings), html_bytes=size)
