"""The ``weekly-mailer`` command line.

Each command group lives in its own module beside this one; this module owns the root group,
the ``--config`` option and the one place where our errors become a message and an exit code.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import sys
from typing import Any

import click

from weekly_mailer import __version__
from weekly_mailer.cli._common import AppContext
from weekly_mailer.errors import WeeklyMailerError

# Where each command lives: its module is imported when the command is looked up, so a command
# loads only what it needs (`send` does not import the bounce parser, the web app or the
# scheduler). Each module's ``register`` adds its commands to the root.
COMMANDS = {
    "init": "setup",
    "db": "setup",
    "subscribers": "subscribers",
    "preview": "compose",
    "doctor": "doctor",
    "dkim": "dkim",
    "bounces": "bounces",
    "schedule": "daemon",
    "run": "daemon",
    "serve": "web",
    "send": "send",
    "worker": "send",
    "issues": "issues",
    "demo": "demo",
}


class _Root(click.Group):
    """Turns :class:`WeeklyMailerError` into one line on stderr and its exit code; loads each
    command's module when the command is looked up (``COMMANDS``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(f"weekly_mailer.cli.{COMMANDS[cmd_name]}")
            module.register(self)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WeeklyMailerError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except Exception as exc:
            # SQLAlchemy is imported by the commands that open the database, not by `--help`
            # or `schedule`: an error can only be one of its own once it is loaded.
            if "sqlalchemy.exc" not in sys.modules:
                raise
            _database_error(ctx, exc)
            raise


def _database_error(ctx: click.Context, exc: Exception) -> None:
    """Exit with one line for what the database said; return for anything else."""
    from sqlalchemy.exc import DatabaseError, DBAPIError, IntegrityError, OperationalError

    if isinstance(exc, IntegrityError):
        # Two processes changed the same row at once (e.g. the same address added twice).
        click.echo(
            "Error: another process changed the same record at the same time; "
            "run the command again",
            err=True,
        )
        ctx.exit(1)
    if isinstance(exc, DBAPIError):
        # The database went away, refused us, or is not a database (a corrupt or truncated
        # SQLite file: DatabaseError itself): one line naming it, not a traceback.
        corrupt = type(exc) is DatabaseError
        if not exc.connection_invalidated and not isinstance(exc, OperationalError):
            if not corrupt:
                return
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        what = _database_name(ctx) if corrupt else ""
        where = f"{what}; " if what else ""
        click.echo(f"Error: database: {reason} ({where}check database_url)", err=True)
        ctx.exit(2)


def _database_name(ctx: click.Context) -> str:
    from weekly_mailer.store.db import describe

    app = ctx.obj
    try:
        return describe(app.settings.database_url) if isinstance(app, AppContext) else ""
    except WeeklyMailerError:
        return ""


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="WEEKLY_MAILER_CONFIG",
    help="Config file (default: ./weekly_mailer.toml when it exists).",
)
@click.version_option(__version__, prog_name="weekly-mailer")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Compose and deliver one newsletter issue a week.

    Settings come from weekly_mailer.toml (or --config), and every key can be overridden by a
    WEEKLY_MAILER_<KEY> environment variable. Start with `weekly-mailer init`, or try the whole
    job with `weekly-mailer demo`.
    """
    ctx.obj = AppContext(config_path)
    ctx.call_on_close(ctx.obj.close)
    # What is imported by now lives until the end: out of the collector's sight, and at exit
    # the interpreter skips a last collection over every object (a send's tenth of a second).
    gc.freeze()
    atexit.register(gc.freeze)


