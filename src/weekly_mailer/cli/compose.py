"""``preview``: compose the week's issue and show the editor exactly what subscribers get."""

from __future__ import annotations

import datetime as dt
import time
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING

import click

from weekly_mailer.cli._common import AppContext, pass_app
from weekly_mailer.errors import ArticleError, ComposeError, TokenError

if TYPE_CHECKING:
    from weekly_mailer.articles import Article
    from weekly_mailer.compose import ComposedIssue, Recipient
    from weekly_mailer.config import Settings

PREVIEW_NAME = "Reader"
PREVIEW_EMAIL = "reader@example.org"
TEST_PREFIX = "[TEST] "


def _outputs(output: str | None) -> tuple[Path, Path]:
    base = Path(output or "preview")
    if base.suffix.lower() in (".html", ".htm"):
        return base, base.with_suffix(".txt")
    if base.suffix.lower() == ".txt":
        return base.with_suffix(".html"), base
    return base.with_name(base.name + ".html"), base.with_name(base.name + ".txt")


def _load(source: str, settings: Settings, week: dt.date, now: dt.datetime) -> Article:
    """The article as ``send`` would take it (a feed: the week's item; a folder: its file)."""
    from weekly_mailer.articles import load_article
    from weekly_mailer.issues import week_window

    start, end = week_window(week, settings)
    if Path(source).is_dir():
        from weekly_mailer.issues.sources import resolve_week_article

        chosen = resolve_week_article(
            source, send_week=week, since=start, until=max(now, end), sent_keys=()
        )
        return chosen.article
    return load_article(source, week_start=start, week_end=max(now, end))


def _recipient(settings: Settings, email: str, name: str) -> Recipient:
    """The preview's reader: its unsubscribe (and manage) link, in the header and the body, is
    a test copy's, whose page says so and changes nothing (no reader is behind it)."""
    from weekly_mailer.compose import Recipient
    from weekly_mailer.compose.links import unsubscribe_url_for_test_copy

    try:
        url = unsubscribe_url_for_test_copy(settings)
    except TokenError:  # no secret_key yet: a preview still shows where the link goes
        url = f"{settings.base_url.rstrip('/')}/unsubscribe/PREVIEW"
    return Recipient(0, email, name, url)


def _filled(issue: ComposedIssue, recipient: Recipient) -> tuple[str, str]:
    from weekly_mailer.compose.message import Personal, fill, html_escape

    values = Personal.of(recipient).body_values()
    return fill(issue.html_template, values, escape=html_escape), fill(issue.text_template, values)


def _send_test(settings: Settings, article: Article, week: dt.date, address: str) -> str:
    """Send one [TEST] copy through the envelopes every message takes (delivery.envelopes:
    the envelope sender and DKIM), on the configured backend."""
    from weekly_mailer.compose import compose_issue, make_message_id
    from weekly_mailer.delivery import resolve_backend
    from weekly_mailer.delivery.envelopes import Envelopes

    envelopes = Envelopes.from_settings(settings)  # a DKIM key that cannot sign: ConfigError
    backend = resolve_backend(settings)
    issue = compose_issue(article, settings, send_week=week, subject_prefix=TEST_PREFIX)
    recipient = _recipient(settings, address, "")
    message_id = make_message_id(settings, f"test-{week}-{time.time_ns()}", 0)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    data = issue.message_for(recipient, message_id=message_id, date=now)
    with backend:
        backend.send(envelopes.seal(address, data, message_id))
    return message_id


@click.command()
@click.argument("source", required=False)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Where to write: BASE gives BASE.html and BASE.txt (default: ./preview).",
)
@click.option("--text", "show_text", is_flag=True, help="Print the text version.")
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML in the web browser.")
@click.option(
    "--send-test",
    "send_to",
    metavar="ADDR",
    help='Send one copy to ADDR through the configured backend ("[TEST]" in the subject); its '
    "unsubscribe link opens a page that says it was a test copy, and changes nothing.",
)
@click.option(
    "--check-links",
    "check_links",
    is_flag=True,
    help="Try every link of the issue (HEAD, then GET; redirects followed; 10 s each) and list "
    "those that do not work; exit 1 when one does not.",
)
@pass_app
def preview(
    app: AppContext,
    source: str | None,
    output: str | None,
    show_text: bool,
    open_browser: bool,
    send_to: str | None,
    check_links: bool,
) -> None:
    """Compose the issue from SOURCE (default: article_source) and write the HTML and text.

    The files show what a subscriber gets (with sample personal values); the lint report says
    what an inbox would clip or break. Errors in it make `send` refuse the issue. With
    --check-links every link is tried; a 4xx/5xx answer, an unknown host, a refused connection
    or a timeout is listed, and the command exits 1 (after writing the files), so a script or
    an editor's habit can stop on it. A broken link never stops `send` or the daemon: the
    editors see it in the [Proof].
    """
    from weekly_mailer.compose import compose_issue
    from weekly_mailer.issues.weeks import send_week_for

    settings = app.settings
    src = source or settings.article_source
    if not src:
        raise ArticleError("no article: pass SOURCE or set article_source in the config")
    now = dt.datetime.now(dt.UTC)
    week = send_week_for(now, settings)
    article = _load(src, settings, week, now)
    issue = compose_issue(article, settings, send_week=week)
    html, text = _filled(issue, _recipient(settings, send_to or PREVIEW_EMAIL, PREVIEW_NAME))
    html_path, text_path = _outputs(output)
    for path, content in ((html_path, html), (text_path, text)):
        try:
            path.write_text(content, encoding="utf-8")
        except OSError as exc:
            raise ComposeError(f"cannot write {path}: {exc.strerror}") from exc
    if show_text:
        click.echo(text, nl=False)
        click.echo()
    click.echo(f"Subject: {issue.subject}")
    click.echo(f"Wrote {html_path} ({len(html.encode()) / 1024:.1f} KB) and {text_path}")
    click.echo("Lint:")
    for line in issue.lint.lines():
        click.echo(f"  {line}")
    if issue.lint.hard_failure:
        click.echo("`send` would refuse this issue until the errors are fixed.")
    if open_browser and not webbrowser.open(html_path.resolve().as_uri()):
        click.echo(f"No browser could be started here: open {html_path.resolve()} yourself.")
    if send_to:
        message_id = _send_test(settings, article, week, send_to)
        click.echo(f"Sent a test copy to {send_to} (Message-ID {message_id}).")
    if check_links:
        _check_links(issue.html_template, own=settings.base_url.rstrip("/"))


def _check_links(html: str, *, own: str) -> None:
    """List the links of ``html`` that do not work; exit 1 when there is one."""
    from weekly_mailer.proofs.links import check_links, links_of

    links = links_of(html, own=own)
    broken = check_links(links)
    if not broken:
        click.echo(f"Links: all {len(links)} work.")
        return
    click.echo(f"Links that do not work: {len(broken)} of {len(links)}")
    for link in broken:
        click.echo(f"  {link.line()}")
    raise SystemExit(1)


def register(main: click.Group) -> None:
    """Add ``preview`` to the root command."""
    main.add_command(preview)
