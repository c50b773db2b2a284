"""Sanitised article HTML → readable plain text for the text/plain part (wrapped at 72)."""

from __future__ import annotations

import re
import textwrap
from html.parser import HTMLParser

WIDTH = 72
_BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "tr",
           "figure", "figcaption", "table", "ul", "ol", "dl", "dt", "dd", "hr"}  # fmt: skip
_SPACE_RE = re.compile(r"[ \t\r\n\f\v]+")
_TABLE = {"table", "tr", "td", "th"}  # thead, tbody and tfoot change nothing here


def _table_block(rows: list[tuple[list[str], bool]]) -> str:
    """Rows as lines of cells padded to their column's width, two spaces apart; a rule of
    dashes under a header row."""
    columns = max(len(cells) for cells, _ in rows)
    widths = [max((len(c[i]) for c, _ in rows if i < len(c)), default=0) for i in range(columns)]
    lines = []
    for cells, head in rows:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(cells)]
        lines.append("  ".join(padded).rstrip())
        if head and len(lines) == 1:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


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
        self._table: list[tuple[list[str], bool]] | None = None  # rows: (cells, all headers)
        self._row: list[str] = []
        self._row_head = True

    def _flush(self) -> None:
        if self._table is not None:  # inside a table: text goes into its cells
            return
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
        if tag in _TABLE and self._table_tag(tag, start=True):
            return
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
        if tag in _TABLE and self._table_tag(tag, start=False):
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

    def _table_tag(self, tag: str, *, start: bool) -> bool:
        """A table's rows and cells (``True``: handled). Its text becomes aligned rows, one a
        line, kept as one block (see :func:`_table_block`)."""
        if tag == "table":
            if start and self._table is None:
                self._flush()
                self._table = []
            elif not start and self._table is not None:
                rows, self._table = self._table, None
                if rows:
                    self.blocks.append(("> " * self._quote, "\0" + _table_block(rows), False))
            return True
        if self._table is None:
            return tag != "tr"  # a stray cell outside a table: its text runs on
        if tag == "tr":
            if start:
                self._row, self._row_head = [], True
            elif self._row:
                self._table.append((self._row, self._row_head))
                self._row = []
        elif tag in ("td", "th"):
            if start:
                self._buf = []
                self._row_head = self._row_head and tag == "th"
            else:
                cell = "".join(self._buf).replace("\0BR\0", " ")
                self._row.append(_SPACE_RE.sub(" ", cell).strip())
                self._buf = []
        return True

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
