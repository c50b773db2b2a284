"""Markdown with YAML front matter → Article (markdown-it-py, CommonMark plus tables).

Front matter keys: ``title``, ``date``, ``author``, ``summary``, ``author_bio``, ``tags`` (a
mapping of label → list, or a plain list stored under ``"Tags"``), ``canonical_url``. Without a
``title`` key the first ``# Heading`` is the title (and leaves the body); a first heading that
repeats the ``title`` leaves the body too.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import yaml
from markdown_it import MarkdownIt

from weekly_mailer.articles.model import Article
from weekly_mailer.articles.sanitise import (
    html_to_plain,
    http_url,
    make_summary,
    normalise_newlines,
    one_line,
    sanitise_html,
)
from weekly_mailer.errors import ArticleError

_FRONT_RE = re.compile(r"\A---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_H1_RE = re.compile(r"\A\s*#[ \t]+(.+?)[ \t#]*(?:\n|\Z)")
KNOWN_KEYS = {"title", "date", "author", "summary", "author_bio", "tags", "canonical_url"}


def _md() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True, "typographer": True}).enable(
        ["table", "strikethrough", "replacements", "smartquotes"]
    )


def _date(value: Any, where: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ArticleError(f"{where}: front matter date {value!r} is not a date") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _tags(value: Any, where: str) -> dict[str, list[str]]:
    if value is None:
        return {}
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return {"Tags": [str(v) for v in value]} if value else {}
    if isinstance(value, dict):
        tags: dict[str, list[str]] = {}
        for key, items in value.items():
            items = [items] if isinstance(items, str | int | float) else items
            if not isinstance(items, list):
                raise ArticleError(f"{where}: front matter tags.{key} must be a list")
            tags[str(key)] = [str(v) for v in items]
        return tags
    raise ArticleError(f"{where}: front matter tags must be a list or a mapping")


def _text(meta: dict[str, Any], key: str, where: str) -> str:
    value = meta.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str | int | float):
        raise ArticleError(f"{where}: front matter {key} must be text")
    return one_line(str(value))


def parse_markdown(text: str, *, source: str = "") -> Article:
    """Parse Markdown with optional front matter; raises :class:`ArticleError` when unusable."""
    where = source or "article"
    text = normalise_newlines(text)
    meta: dict[str, Any] = {}
    m = _FRONT_RE.match(text)
    if m:
        try:
            loaded = yaml.safe_load(m.group(1) or "")
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" (line {mark.line + 2})" if mark is not None else ""
            raise ArticleError(f"{where}: bad front matter{at}: not valid YAML") from exc
        except (ValueError, OverflowError) as exc:  # date: 2026-13-45 looks like a YAML date
            raise ArticleError(
                f"{where}: bad front matter: a value that looks like a date is not a real date "
                f"({one_line(str(exc))})"
            ) from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ArticleError(f"{where}: bad front matter: expected 'key: value' lines")
        meta = {str(k): v for k, v in loaded.items()}
        text = text[m.end() :]
    elif text.startswith("---\n"):
        raise ArticleError(f"{where}: bad front matter: no closing '---' line")
    unknown = set(meta) - KNOWN_KEYS
    if unknown:
        raise ArticleError(f"{where}: unknown front matter key(s): {', '.join(sorted(unknown))}")

    title = _text(meta, "title", where)
    h1 = _H1_RE.match(text)
    heading = one_line(html_to_plain(_md().renderInline(h1.group(1)))) if h1 else ""
    if h1 and (not title or heading.casefold() == title.casefold()):
        title = title or heading  # the title comes once (a same first heading leaves the body)
        text = text[h1.end() :]
    if not title:
        raise ArticleError(f"{where}: no title (add 'title:' to the front matter or a '# Heading')")

    body_html = sanitise_html(_md().render(text))
    plain = html_to_plain(body_html)
    if not plain:
        raise ArticleError(f"{where}: the article {title!r} has no body text")
    first_p = re.search(r"<p>(.*?)</p>", body_html, re.DOTALL)
    summary = _text(meta, "summary", where) or make_summary(
        html_to_plain(first_p.group(1)) if first_p else plain
    )
    return Article(
        title=title,
        date=_date(meta.get("date"), where),
        author=_text(meta, "author", where),
        summary=summary,
        body_html=body_html,
        author_bio=_text(meta, "author_bio", where),
        tags=_tags(meta.get("tags"), where),
        canonical_url=http_url(_text(meta, "canonical_url", where), where=where),
        source=source,
    )
