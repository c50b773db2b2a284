"""``weekly-mailer serve --help``: every option says what it does; ``serve`` and ``run`` share
one set of web options and validate the port alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import init_in, run_cli
from weekly_mailer.cli import main


def test_serve_help_explains_every_option(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert (
        "--threads INTEGER RANGE Web requests served at once (waitress worker threads, 1-64)."
        in text
    )
    assert "[default: 4; 1<=x<=64]" in text
    for option in ("--host", "--port", "--trusted-proxy"):
        assert option in text


def _web_options(help_text: str) -> list[str]:
    wanted = ("--host", "--port", "--threads", "--trusted-proxy")
    return [
        " ".join(line.split()) for line in help_text.splitlines() if line.strip().startswith(wanted)
    ]


def test_serve_and_run_share_one_set_of_web_options(runner: CliRunner) -> None:
    serve = runner.invoke(main, ["serve", "--help"], terminal_width=200)
    run = runner.invoke(main, ["run", "--help"], terminal_width=200)
    assert len(_web_options(serve.output)) == 4
    assert _web_options(serve.output) == _web_options(run.output)


@pytest.mark.parametrize("command", ["serve", "run"])
@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_refused_by_both(workdir: Path, command: str, port: str) -> None:
    init_in(workdir)
    result = run_cli(command, "--port", port, cwd=workdir, timeout=30)
    assert result.returncode == 2  # a usage error: nothing listens on a random port instead
    assert "Traceback" not in result.stderr
    assert f"Invalid value for '--port': {port} is not in the range 0<=x<=65535." in result.stderr
