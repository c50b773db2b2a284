"""``weekly-mailer serve --help``: every option says what it does."""

from __future__ import annotations

from click.testing import CliRunner

from weekly_mailer.cli import main


def test_serve_help_explains_every_option(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert (
        "--threads INTEGER RANGE Requests served at once (waitress worker threads, 1-64)." in text
    )
    assert "[default: 4; 1<=x<=64]" in text
    for option in ("--host", "--port", "--trusted-proxy"):
        assert option in text
