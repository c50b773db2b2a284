"""`weekly-mailer run` refuses to start, with one clear line, when it cannot work."""

from __future__ import annotations

import socket
from pathlib import Path

from click.testing import CliRunner

from weekly_mailer.cli import main
from weekly_mailer.config import Settings
from weekly_mailer.store.db import Database


def env_for(settings: Settings) -> dict[str, str]:
    return {
        "WEEKLY_MAILER_DATABASE_URL": settings.database_url,
        "WEEKLY_MAILER_BACKEND_URL": settings.backend_url,
        "WEEKLY_MAILER_SECRET_KEY": settings.secret_key,
        "WEEKLY_MAILER_BASE_URL": settings.base_url,
    }


def test_run_with_the_port_taken(
    runner: CliRunner, workdir: Path, settings: Settings, database: Database
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(main, ["run", "--port", str(port)], env=env_for(settings))
    assert result.exit_code == 2
    # the same one line as `serve` (docs/web.md)
    assert result.output == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert "Traceback" not in result.output


def test_run_on_an_unmigrated_database(runner: CliRunner, workdir: Path, tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", secret_key="k")
    result = runner.invoke(main, ["run"], env=env_for(settings))
    assert result.exit_code == 2
    assert result.output == (
        "Error: the database is empty: run `weekly-mailer init` or `weekly-mailer db upgrade`\n"
    )


def test_every_option_of_run_and_schedule_has_help(runner: CliRunner) -> None:
    import click

    for name in ("run", "schedule"):
        command = main.get_command(click.Context(main), name)
        assert command is not None
        bare = [
            p.name
            for p in command.params
            if isinstance(p, click.Option) and not p.hidden and not p.help
        ]
        assert bare == [], f"{name}: options without --help text: {bare}"
    shown = runner.invoke(main, ["run", "--help"]).output
    assert "Web requests served at once" in shown
    assert (
        "How many upcoming send times to print."
        in runner.invoke(main, ["schedule", "--help"]).output
    )
