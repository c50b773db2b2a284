"""What every command shares: settings and the database, opened lazily, once."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from weekly_mailer.clock import utcnow
from weekly_mailer.config import (
    DEFAULT_CONFIG_NAME,
    ENV_PREFIX,
    Settings,
    config_path,
    load_settings,
)
from weekly_mailer.errors import ConfigError, DatabaseNotReadyError
from weekly_mailer.logs import configure_logging

if TYPE_CHECKING:
    from weekly_mailer.store.db import Database


class AppContext:
    """Lazily loaded settings and database for one CLI invocation.

    ``clock`` is "now" for the commands that decide a send week (``send``, ``demo``); it is not
    an option or a variable: tests that invoke a command with their own ``AppContext`` set it.
    """

    def __init__(
        self, config_path: str | None, *, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.config_path = config_path
        self.clock = clock
        self._settings: Settings | None = None
        self._db: Database | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            configure_logging(self._settings.log_level)  # third parties at WARNING unless DEBUG
        return self._settings

    @property
    def db(self) -> Database:
        """The database, checked to be migrated (else a one-line error saying what to run)."""
        if self._db is None:
            from weekly_mailer.store.db import Database

            try:
                self._db = Database(self.settings)
            except DatabaseNotReadyError as exc:
                raise self._lost(exc) from exc
        return self._db

    def _lost(self, exc: DatabaseNotReadyError) -> DatabaseNotReadyError:
        """Say so when no config file was found (the user is in the wrong folder, most often)
        and the database is the default one."""
        env = os.environ
        if config_path(self.config_path, env) is not None or ENV_PREFIX + "DATABASE_URL" in env:
            return exc
        return DatabaseNotReadyError(
            f"{exc}; no {DEFAULT_CONFIG_NAME} was found in {os.getcwd()} (and "
            f"{ENV_PREFIX}CONFIG is not set): run the command in the folder that has it, or "
            f"`weekly-mailer init` here to make one"
        )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


pass_app = click.make_pass_decorator(AppContext)


def cannot_listen(host: str, port: int, exc: OSError) -> ConfigError:
    """The one-line error of ``serve`` and ``run`` for a port that cannot be bound."""
    reason = exc.strerror or str(exc)
    reason = reason.split(" (while attempting", 1)[0]  # socket.create_server's suffix
    return ConfigError(f"cannot listen on {host}:{port}: {reason}")


def listen_options(what: str) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """The one set of web options of ``serve`` and ``run``: --host, --port (0-65535; 0 asks
    the system for a free port), --threads and --trusted-proxy. ``what`` names the listener in
    the help."""

    def decorate(command: Callable[..., object]) -> Callable[..., object]:
        for option in reversed(
            [
                click.option(
                    "--host",
                    default=None,
                    help=f"Address {what} listens on (default: settings.host).",
                ),
                click.option(
                    "--port",
                    type=click.IntRange(0, 65535),
                    default=None,
                    help="Port, 0-65535 (default: settings.port).",
                ),
                click.option(
                    "--threads",
                    type=click.IntRange(1, 64),
                    default=4,
                    show_default=True,
                    help="Web requests served at once (waitress worker threads, 1-64).",
                ),
                click.option(
                    "--trusted-proxy",
                    default=None,
                    metavar="ADDR",
                    help="A reverse proxy whose X-Forwarded-For/-Proto headers to believe.",
                ),
            ]
        ):
            command = option(command)
        return command

    return decorate
