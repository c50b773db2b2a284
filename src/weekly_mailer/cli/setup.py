"""``init`` and ``db``: create the config and the database."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import click

from weekly_mailer.cli._common import AppContext, pass_app
from weekly_mailer.config import DEFAULT_CONFIG_NAME, load_settings, starter_config
from weekly_mailer.errors import ConfigError


@click.command()
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
@click.option("--database-url", default=None, help="Database URL to write (default: SQLite file).")
@click.option(
    "--backend-url", default=None, help="Backend URL to write (default: file://./outbox)."
)
@pass_app
def init(app: AppContext, force: bool, database_url: str | None, backend_url: str | None) -> None:
    """Write a starter config with a fresh secret key, and create the database.

    The config goes to --config PATH, else ./weekly_mailer.toml. An existing config is kept
    (pass --force to replace it) and its database is created or upgraded.
    """
    from weekly_mailer.store.db import engine_for, upgrade

    path = Path(app.config_path or DEFAULT_CONFIG_NAME)
    if path.exists() and not force:
        click.echo(f"Keeping the existing config {path}.")
        if not load_settings(path).secret_key:
            _add_secret_key(path)
            click.echo(f"Added a new secret_key to {path} (it had none).")
    else:
        if path.parent and not path.parent.exists():
            raise ConfigError(f"config: folder {str(path.parent)!r} does not exist")
        text = starter_config(
            secret_key=secrets.token_urlsafe(32),
            database_url=database_url or "sqlite:///weekly_mailer.db",
            backend_url=backend_url or "file://./outbox",
        )
        # Created 0600 from the start: the secret key is never readable by others, not even
        # for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        path.chmod(0o600)
        click.echo(f"Wrote {path} (with a new secret key).")
    settings = load_settings(path)
    app._settings = settings
    engine = engine_for(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    click.echo(f"Database ready: {_display_url(settings.database_url)}")
    click.echo(
        "Next: `weekly-mailer subscribers add you@example.org --confirmed`, "
        "then `weekly-mailer preview`."
    )


def _add_secret_key(path: Path) -> None:
    """Give a kept config a fresh secret: replace an empty ``secret_key`` line, or append one."""
    text = path.read_text(encoding="utf-8")
    line = f'secret_key = "{secrets.token_urlsafe(32)}"'
    pattern = re.compile(r"^[ \t]*secret_key[ \t]*=.*$", re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(line, text, count=1)
    else:
        text = text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)


def _display_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@click.group()
def db() -> None:
    """Manage the database schema (Alembic migrations)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_app
def db_upgrade(app: AppContext, revision: str) -> None:
    """Migrate the database to REVISION (default: the newest)."""
    from weekly_mailer.store.db import current_revision, engine_for, upgrade

    engine = engine_for(app.settings)
    try:
        upgrade(engine, revision)
        click.echo(f"Database at revision {current_revision(engine)}.")
    finally:
        engine.dispose()


@db.command("downgrade")
@click.argument("revision")
@click.confirmation_option(prompt="Downgrading can drop data. Continue?")
@pass_app
def db_downgrade(app: AppContext, revision: str) -> None:
    """Migrate the database back to REVISION ('base' drops everything)."""
    from weekly_mailer.store.db import current_revision, downgrade, engine_for

    engine = engine_for(app.settings)
    try:
        downgrade(engine, revision)
        click.echo(f"Database at revision {current_revision(engine) or 'base'}.")
    finally:
        engine.dispose()


@db.command("current")
@pass_app
def db_current(app: AppContext) -> None:
    """Print the database's revision and the newest one this version ships."""
    from weekly_mailer.store.db import current_revision, engine_for, head_revision

    engine = engine_for(app.settings)
    try:
        click.echo(f"database: {current_revision(engine) or 'none (not migrated)'}")
        click.echo(f"newest:   {head_revision()}")
    finally:
        engine.dispose()


def register(main: click.Group) -> None:
    main.add_command(init)
    main.add_command(db)
