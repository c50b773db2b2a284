"""``demo``: the whole job on embedded defaults in a fresh folder, with nothing to set up."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import click
import tomli_w

from weekly_mailer.cli._common import AppContext, pass_app
from weekly_mailer.cli._delivery import deliver_with_progress, stop_on_signals, summary_table
from weekly_mailer.errors import DemoError

DEMO_CONFIG = "weekly_mailer.toml"
FIRST = (
    "ada",
    "ben",
    "chloe",
    "dev",
    "elif",
    "femi",
    "greta",
    "hugo",
    "ines",
    "jun",
    "kofi",
    "lena",
    "milo",
    "nadia",
    "oscar",
    "priya",
    "quinn",
    "rosa",
    "sami",
    "tove",
)
LAST = (
    "archer",
    "brook",
    "castell",
    "dunmore",
    "eastwood",
    "fairley",
    "garner",
    "holt",
    "ingram",
    "jansen",
    "kerr",
    "lowe",
    "marsh",
    "north",
    "okafor",
)


def sample_subscribers(n: int) -> str:
    """A CSV of ``n`` made-up readers at example.org (a reserved domain: no real person)."""
    rows = ["email,name"]
    for i in range(n):
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        suffix = "" if i < len(FIRST) * len(LAST) else str(i)
        rows.append(f"{first}.{last}{suffix}@example.org,{first.title()} {last.title()}")
    return "\n".join(rows) + "\n"


def _write_config(root: Path) -> Path:
    values = {
        "database_url": f"sqlite:///{root / 'demo.db'}",
        "backend_url": f"file://{root / 'outbox'}",
        "from_address": "Demo Weekly <newsletter@example.org>",
        "list_name": "Demo Weekly",
        "list_id": "demo-weekly.example.org",
        "base_url": "http://127.0.0.1:8080",
        "secret_key": secrets.token_urlsafe(32),
        "article_source": str(root / "article.md"),
        "postal_address": "1 Demo Street, Example Town",
        "log_level": "WARNING",
    }
    path = root / DEMO_CONFIG
    path.write_text(
        "# Written by `weekly-mailer demo`. Try: weekly-mailer --config "
        f"{path} issues list\n" + tomli_w.dumps(values),
        encoding="utf-8",
    )
    return path


@click.command()
@click.argument("folder", default="demo", type=click.Path(file_okay=False))
@click.option(
    "--subscribers",
    "count",
    type=click.IntRange(1, 100_000),
    default=300,
    show_default=True,
    help="How many sample subscribers (…@example.org) a new demo gets.",
)
@pass_app
def demo(app: AppContext, folder: str, count: int) -> None:
    """Run the whole job in FOLDER (default ./demo): a config, an SQLite
    database, a sample article, COUNT sample subscribers, and one issue delivered as .eml
    files. Running it again in the same folder sends nothing new."""
    from weekly_mailer import issues
    from weekly_mailer import subscribers as subs
    from weekly_mailer.config import load_settings
    from weekly_mailer.delivery import resolve_backend
    from weekly_mailer.demo import sample_article
    from weekly_mailer.store.db import Database, engine_for, upgrade

    root = Path(folder).resolve()
    config = root / DEMO_CONFIG
    if root.exists() and any(root.iterdir()) and not config.exists():
        raise DemoError(f"{root} is not empty and holds no demo; choose a new folder")
    root.mkdir(parents=True, exist_ok=True)
    if not config.exists():
        _write_config(root)
        click.echo(f"Wrote {config}")
    article_path = root / "article.md"
    if not article_path.exists():
        article_path.write_text(sample_article(), encoding="utf-8")
    settings = load_settings(config, environ={})  # the demo never follows your environment
    engine = engine_for(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    now = app.clock()
    with Database(settings) as db:
        with db.sessions.begin() as session:
            if subs.count(session) == 0:
                report = subs.import_file(
                    session, sample_subscribers(count).encode(), filename="demo", confirmed=True
                )
                click.echo(f"Added {report.added} sample subscribers (…@example.org).")
            look = issues.look_at_week(session, settings, now=now)
        plan = issues.plan_week(look, settings, source=str(article_path))
        with db.sessions.begin() as session:
            prepared = issues.prepare_week(session, plan, now=now)
            issue = prepared.issue
            if prepared.queued is not None:
                click.echo(f"Issue #{issue.id} {issue.subject!r}: queued for {prepared.queued}.")
            issue_id, preview_html, week = issue.id, issue.archive_html, issue.send_week
            todo = issues.open_count(session, issue_id)
        backend = resolve_backend(settings)
        stop = threading.Event()
        with backend, stop_on_signals(stop):
            stats = deliver_with_progress(
                db, settings, backend, issue_id, stop=stop, total=todo, clock=app.clock
            )
        with db.sessions.begin() as session:
            counts = issues.counts(session, issue_id)
    preview = root / "preview.html"
    preview.write_text(preview_html, encoding="utf-8")
    outbox = root / "outbox"
    summary_table(f"Issue #{issue_id} (week of {week})", counts, stats)
    files = len(list(outbox.glob("*.eml"))) if outbox.exists() else 0
    click.echo(f"Messages: {files} .eml files in {outbox}")
    click.echo(f"Preview:  {preview}")
    click.echo(f"Next: weekly-mailer --config {config} issues show {issue_id}")


def register(main: click.Group) -> None:
    main.add_command(demo)
