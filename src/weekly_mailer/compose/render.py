"""Render the issue once: Jinja2 templates, then premailer inlines the CSS.

Templates come from ``settings.templates_dir`` (its ``email/`` subfolder, or the folder itself)
before the built-in ``templates/email/``, so an editor can override any one of them. The result
holds placeholder markers (see :mod:`.placeholders`) for the per-recipient values.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from weekly_mailer.compose import placeholders
from weekly_mailer.compose.text import html_to_text, wrap_paragraph
from weekly_mailer.errors import ComposeError
from weekly_mailer.paths import data_dir

if TYPE_CHECKING:
    from weekly_mailer.articles import Article
    from weekly_mailer.config import Settings

LANG = "en"


def builtin_templates_dir() -> Path:
    """The built-in email templates: inside the wheel, else the checkout's ``templates/email``."""
    found = data_dir("_templates/email", "templates/email", marker="issue.html")
    if found is None:
        raise ComposeError("the built-in email templates are missing from this installation")
    return found


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: str) -> jinja2.Environment:
    paths: list[str] = []
    if templates_dir:
        custom = Path(templates_dir)
        if not custom.is_dir():
            raise ComposeError(f"templates_dir: {templates_dir!r} is not a folder")
        paths += [str(custom / "email"), str(custom)]
    paths.append(str(builtin_templates_dir()))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap_paragraph
    return env


def environment(settings: Settings) -> jinja2.Environment:
    """The Jinja2 environment for these settings (cached per ``templates_dir``)."""
    return _environment(settings.templates_dir)


def render_template(settings: Settings, name: str, context: dict[str, Any]) -> str:
    """Render one template; template errors become a one-line :class:`ComposeError`."""
    try:
        return environment(settings).get_template(name).render(context)
    except jinja2.TemplateNotFound as exc:
        raise ComposeError(f"template {exc.name!r} not found") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise ComposeError(
            f"template {exc.filename or exc.name}: line {exc.lineno}: {exc.message}"
        ) from exc
    except jinja2.TemplateError as exc:
        raise ComposeError(f"template {name}: {exc}") from exc


def inline_css(html: str) -> str:
    """Inline the ``<style>`` rules (premailer); ``@media`` rules stay in a ``<style>``."""
    from premailer import Premailer

    logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)
    out: str = Premailer(
        html,
        disable_validation=True,
        allow_network=False,
        strip_important=False,
        cssutils_logging_level=logging.CRITICAL,
        remove_classes=False,
        disable_basic_attributes=["width", "height"],
    ).transform()
    return out if out.endswith("\n") else out + "\n"


_BODY_RE = re.compile(r"(<body\b[^>]*>)(.*)(</body\s*>)", re.DOTALL | re.IGNORECASE)
_SPLIT = "<!--wm-archive-split-->"


def inline_css_pair(first: str, second: str) -> tuple[str, str]:
    """Inline two documents that share their ``<head>`` in one premailer pass (it is the
    expensive step of composing): the second body rides along after the first, then they are
    cut apart again. Documents that differ outside ``<body>`` get two passes."""
    a, b = _BODY_RE.search(first), _BODY_RE.search(second)
    if (
        a is None
        or b is None
        or first[: a.start()] != second[: b.start()]
        or a.group(1) != b.group(1)
        or _SPLIT in first + second
    ):
        return inline_css(first), inline_css(second)
    combined = first[: a.end(2)] + _SPLIT + b.group(2) + first[a.end(2) :]
    out = inline_css(combined)
    m = _BODY_RE.search(out)
    if m is None or m.group(2).count(_SPLIT) != 1:
        return inline_css(first), inline_css(second)
    inner_a, inner_b = m.group(2).split(_SPLIT)
    head, tail = out[: m.end(1)], out[m.start(3) :]
    return head + inner_a + tail, head + inner_b + tail


_BLANKS_RE = re.compile(r"\n{3,}")


def tidy_text(text: str) -> str:
    """LF endings, no trailing spaces, at most one blank line in a row, one final newline."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANKS_RE.sub("\n\n", text).strip("\n") + "\n"


def display_date(article: Article) -> str:
    """``November 21, 2007`` or empty."""
    d = article.date
    return f"{d:%B} {d.day}, {d.year}" if d else ""


def byline(article: Article) -> str:
    """``By Author · November 21, 2007`` (either part may be missing)."""
    parts = [f"By {article.author}" if article.author else "", display_date(article)]
    return " · ".join(p for p in parts if p)


@dataclasses.dataclass(frozen=True)
class RenderedIssue:
    """The issue rendered once: HTML and text with markers, and the archive page."""

    html_template: str
    text_template: str
    archive_html: str


def _check_reserved(article: Article) -> None:
    for field in dataclasses.fields(article):
        value = getattr(article, field.name)
        if isinstance(value, str) and placeholders.RESERVED in value:
            raise ComposeError(
                f"the article's {field.name} contains the reserved text {placeholders.RESERVED!r}"
            )


def render_issue(article: Article, settings: Settings, *, archive_url: str) -> RenderedIssue:
    """Render HTML (inlined) and text with placeholder markers, plus the personal-data-free
    archive copy."""
    _check_reserved(article)
    base_url = settings.base_url.rstrip("/")
    context: dict[str, Any] = {
        "article": article,
        "byline": byline(article),
        "date": display_date(article),
        "list_name": settings.list_name,
        "postal_address": settings.postal_address,
        "base_url": base_url,
        "subscribe_url": base_url + "/",
        "archive_url": archive_url,
        "preheader": article.summary,
        "page_title": article.title,
        "lang": LANG,
        "ph": placeholders.Markers,
        "archive": False,
    }
    html, archive = inline_css_pair(
        render_template(settings, "issue.html", context),
        render_template(settings, "issue.html", context | {"archive": True, "archive_page": True}),
    )
    text_context = context | {"body_text": html_to_text(article.body_html)}
    text = tidy_text(render_template(settings, "issue.txt", text_context))
    return RenderedIssue(html_template=html, text_template=text, archive_html=archive)


def render_confirmation(
    settings: Settings, *, email: str, name: str, confirm_url: str
) -> tuple[str, str]:
    """The confirmation email's HTML (inlined) and text.

    No hidden preheader: a confirmation carries no List-Id or List-Unsubscribe, so SpamAssassin
    reads hidden text in it as direct-to-MX spam (``STY_INVIS_DIRECT``, +1.0, whenever the body
    is plain ASCII); its inbox preview is its first visible line, the title."""
    base_url = settings.base_url.rstrip("/")
    context: dict[str, Any] = {
        "email": email,
        "name": name,
        "confirm_url": confirm_url,
        "list_name": settings.list_name,
        "postal_address": settings.postal_address,
        "base_url": base_url,
        "subscribe_url": base_url + "/",
        "archive_url": base_url + "/archive",
        "page_title": f"Confirm your subscription to {settings.list_name}",
        "lang": LANG,
        "archive": True,
    }
    html = inline_css(render_template(settings, "confirm.html", context))
    text = tidy_text(render_template(settings, "confirm.txt", context))
    return html, text
