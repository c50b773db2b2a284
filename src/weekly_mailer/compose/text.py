"""Sanitised article HTML → readable plain text for the text/plain part (wrapped at 72)."""

from __future__ import annotations

import re
import textwrap
from html.parser import HTMLParser

WIDTH = 72
_BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "tr",
           "figure", "figcaption", "table", "ul", "ol", "dl", "dt", "dd", "hr"}  # fmt: skip
_SPACE_RE = re.compile(r"[ \t\r\n\f\v]+")


class _TextBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str, bool]] = []  # (prefix, text, is a list item)
        self._buf: list[str] = []
        self._lists: list[list[int]] = []  # [counter] for ol, [-1] for ul
        self._quote = 0
        self._pre = 0
        self._href: list[str | None] = []
        self._link_text_start: list[int] = []
        self._heading = ""

    def _flush(self) -> None:
        text = "".join(self._buf)
        self._buf = []
        if self._pre:
            text = text.strip("\n")
        else:
            text = _SPACE_RE.sub(" ", text).strip()
        if text:
            prefix = "> " * self._quote
            if self._heading:
                text = text.upper() if self._heading in ("h1", "h2") else text
            is_item = bool(re.match(r"^\s*(?:- |\d+\. )", text)) and bool(self._lists)
            self.blocks.append((prefix, ("\0" if self._pre else "") + text, is_item))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in _BLOCKS or tag == "br":
            if tag == "br":
                self._buf.append("\n" if self._pre else "\0BR\0")
                return
            self._flush()
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._heading = tag
        elif tag == "ul":
            self._lists.append([-1])
        elif tag == "ol":
            self._lists.append([int(a.get("start") or 1) - 1])
        elif tag == "li":
            marker = "- "
            if self._lists and self._lists[-1][0] >= 0:
                self._lists[-1][0] += 1
                marker = f"{self._lists[-1][0]}. "
            self._buf.append("  " * max(len(self._lists) - 1, 0) + marker)
        elif tag == "blockquote":
            self._quote += 1
        elif tag == "pre":
            self._pre += 1
        elif tag == "hr":
            self.blocks.append(("", "-" * 20, False))
        elif tag == "a":
            self._href.append(a.get("href"))
            self._link_text_start.append(len("".join(self._buf)))
        elif tag == "img":
            alt = (a.get("alt") or "").strip()
            if alt:
                self._buf.append(f"[{alt}]")
        elif tag in ("td", "th"):
            if self._buf and "".join(self._buf).strip():
                self._buf.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href:
            href = self._href.pop()
            start = self._link_text_start.pop()
            text = "".join(self._buf)[start:].strip()
            if href and href.startswith(("http://", "https://", "mailto:")) and href != text:
                shown = href[7:] if href.startswith("mailto:") else href
                if shown != text:
                    self._buf.append(f" ({shown})")
            return
        if tag in _BLOCKS:
            self._flush()
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._heading = ""
        elif tag in ("ul", "ol") and self._lists:
            self._lists.pop()
        elif tag == "blockquote":
            self._quote = max(self._quote - 1, 0)
        elif tag == "pre":
            self._pre = max(self._pre - 1, 0)

    def handle_data(self, data: str) -> None:
        self._buf.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def html_to_text(fragment: str, *, width: int = WIDTH) -> str:
    """Paragraphs separated by blank lines, lists with markers, links as ``text (url)``."""
    builder = _TextBuilder()
    builder.feed(fragment)
    builder.close()
    out: list[str] = []
    previous_item = False
    for prefix, text, is_item in builder.blocks:
        if text.startswith("\0"):
            out.append("\n".join(prefix + line for line in text[1:].split("\n")))
            previous_item = False
            continue
        lines = []
        for piece in text.split("\0BR\0"):
            piece = piece.strip()
            indent = ""
            m = re.match(r"^(\s*(?:- |\d+\. ))", piece)
            if m:
                indent = " " * len(m.group(1))
            lines.extend(
                textwrap.wrap(
                    piece,
                    width=max(width - len(prefix), 20),
                    initial_indent=prefix,
                    subsequent_indent=prefix + indent,
                    break_long_words=False,
                    break_on_hyphens=False,
                )
                or [prefix.rstrip()]
            )
        if is_item and previous_item:
            out[-1] += "\n" + "\n".join(lines)
        else:
            out.append("\n".join(lines))
        previous_item = is_item
    return "\n\n".join(out)


def wrap_paragraph(text: str, *, width: int = WIDTH) -> str:
    """One paragraph wrapped at ``width`` without breaking words or URLs."""
    return "\n".join(
        textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False)
    )
