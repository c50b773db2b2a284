"""Settings: file, environment, validation errors (one line naming the key, exit code 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import init_in, run_cli
from weekly_mailer.config import Settings, load_settings, parse_schedule
from weekly_mailer.errors import ConfigError


def test_defaults_are_embedded(workdir: Path) -> None:
    s = load_settings(environ={})
    assert s.database_url == "sqlite:///weekly_mailer.db"
    assert s.backend_url == "file://./outbox"
    assert s.timezone == "America/Los_Angeles"
    assert s.schedule == "wed 18:00"
    assert s.secret_key == ""  # never a default secret: `init` generates one


def test_file_then_environment(workdir: Path) -> None:
    (workdir / "weekly_mailer.toml").write_text('list_name = "From file"\nsend_rate = 5\n')
    s = load_settings(environ={"WEEKLY_MAILER_SEND_RATE": "12.5"})
    assert s.list_name == "From file"
    assert s.send_rate == 12.5


def test_explicit_path_and_env_path(tmp_path: Path, workdir: Path) -> None:
    cfg = tmp_path / "other.toml"
    cfg.write_text('list_id = "x.example.org"\n')
    assert load_settings(cfg, environ={}).list_id == "x.example.org"
    assert load_settings(environ={"WEEKLY_MAILER_CONFIG": str(cfg)}).list_id == "x.example.org"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEEKLY_MAILER_TIMEZONE": "Mars/Olympus"}, "timezone: unknown timezone 'Mars/Olympus'"),
        ({"WEEKLY_MAILER_BACKEND_URL": "ftp://h"}, "backend_url: unknown scheme 'ftp'"),
        ({"WEEKLY_MAILER_BASE_URL": "not a url"}, "base_url: 'not a url' is not a URL"),
        ({"WEEKLY_MAILER_DATABASE_URL": "mysql://x/y"}, "database_url: unsupported database"),
        ({"WEEKLY_MAILER_DATABASE_URL": "::::"}, "database_url: '::::' is not a database URL"),
        ({"WEEKLY_MAILER_SEND_RATE": "fast"}, "send_rate: expected a number, got 'fast'"),
        ({"WEEKLY_MAILER_CONCURRENCY": "0"}, "concurrency: must be positive"),
        ({"WEEKLY_MAILER_SCHEDULE": "someday"}, "schedule: 'someday' is not like 'wed 18:00'"),
        ({"WEEKLY_MAILER_FROM_ADDRESS": "nobody"}, "from_address: 'nobody' is not an e-mail"),
        ({"WEEKLY_MAILER_COLOUR": "blue"}, "colour: unknown configuration key"),
        ({"WEEKLY_MAILER_PORT": "99999"}, "port: '99999' is not a TCP port (1-65535)"),
        ({"WEEKLY_MAILER_SEND_RATE": "nan"}, "send_rate: expected a finite number, got 'nan'"),
        ({"WEEKLY_MAILER_CONCURRENCY": "2.5"}, "concurrency: expected a whole number, got '2.5'"),
        (
            {"WEEKLY_MAILER_UNSUBSCRIBE_MAILTO": "ü@example.org"},
            "unsubscribe_mailto: 'ü@example.org' has non-ASCII",
        ),
    ],
)
def test_bad_values_name_the_key(workdir: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_key_in_file(workdir: Path) -> None:
    (workdir / "weekly_mailer.toml").write_text('databse_url = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError, match=r"^databse_url: unknown configuration key"):
        load_settings(environ={})


def test_smtp_url_needs_host() -> None:
    with pytest.raises(ConfigError, match="names no SMTP host"):
        Settings().replace(backend_url="smtp://")


def test_schedule_parsing() -> None:
    assert parse_schedule("wed 18:00") == (2, 18, 0)
    assert parse_schedule("Wednesday 6:30") == (2, 6, 30)
    with pytest.raises(ConfigError):
        parse_schedule("wed 25:00")


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ({"WEEKLY_MAILER_TIMEZONE": "Nowhere/City"}, "Error: timezone: unknown timezone"),
        (
            {"WEEKLY_MAILER_BACKEND_URL": "carrier-pigeon://coop"},
            "Error: backend_url: unknown scheme",
        ),
        ({"WEEKLY_MAILER_BASE_URL": "example.org"}, "Error: base_url:"),
    ],
)
def test_cli_reports_bad_config_with_exit_2(
    workdir: Path, setup: dict[str, str], expected: str
) -> None:
    result = run_cli("subscribers", "count", cwd=workdir, env=setup)
    assert result.returncode == 2
    assert result.stderr.startswith(expected)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_bad_toml_file(workdir: Path) -> None:
    (workdir / "weekly_mailer.toml").write_text("list_name = \n")
    result = run_cli("subscribers", "count", cwd=workdir)
    assert result.returncode == 2
    assert "is not valid TOML" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_config_file(workdir: Path) -> None:
    result = run_cli("--config", "nope.toml", "subscribers", "count", cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: config: file 'nope.toml' does not exist"


def test_cli_unreachable_database_is_one_line(workdir: Path) -> None:
    env = {"WEEKLY_MAILER_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    for args in (("db", "upgrade"), ("subscribers", "count")):
        result = run_cli(*args, cwd=workdir, env=env)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith(("Error: database:", "Error: cannot open the database"))
        assert "check database_url" in result.stderr


def test_cli_sqlite_folder_missing(workdir: Path) -> None:
    env = {"WEEKLY_MAILER_DATABASE_URL": "sqlite:///no/such/folder/x.db"}
    result = run_cli("db", "upgrade", cwd=workdir, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: database_url: folder 'no/such/folder' does not exist"


def test_cli_bad_migration_revision(workdir: Path) -> None:
    result = run_cli("db", "upgrade", "nonsense", cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: migration: ")
    assert "Traceback" not in result.stderr


def test_cli_missing_database_driver(workdir: Path) -> None:
    env = {"WEEKLY_MAILER_DATABASE_URL": "postgresql+pg8000://u@127.0.0.1/x"}
    result = run_cli("db", "upgrade", cwd=workdir, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: database_url: the driver 'postgresql+pg8000' is not")
    assert "pip install 'weekly-mailer[postgres]'" in result.stderr


def _init_with(workdir: Path, lines: str) -> None:
    """``init``, then the config file with ``lines`` in place of the keys they set."""
    init_in(workdir)
    config = workdir / "weekly_mailer.toml"
    keys = {line.split("=", 1)[0].strip() for line in lines.splitlines() if "=" in line}
    kept = [ln for ln in config.read_text().splitlines() if ln.split("=", 1)[0].strip() not in keys]
    config.write_text("\n".join(kept) + "\n" + lines)


def _one_line_exit_2(result: object, starts: str) -> None:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 2, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith(starts), stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("retry_give_up_hours = 1e9\n", "Error: retry_give_up_hours: 1000000000.0 is too large"),
        ("lease_seconds = 1e300\n", "Error: lease_seconds: 1e+300 is too large (at most 86400)"),
        (f"batch_size = {'7' * 400}\n", "Error: batch_size: 777777"),
        ("smtp_timeout = 4e5\n", "Error: smtp_timeout: 400000.0 is too large (at most 3600)"),
        ("smtp_data_timeout = 1e300\n", "Error: smtp_data_timeout: 1e+300 is too large"),
        ('base_url = "https://x.org "\n', "Error: base_url: 'https://x.org ' contains a space"),
        ('base_url = "https://"\n', "Error: base_url: 'https://' has no host"),
        ('base_url = "mailto:x@x.org"\n', "Error: base_url: unknown scheme 'mailto'"),
    ],
)
def test_doctor_and_send_refuse_values_that_would_fail_later(
    workdir: Path, line: str, message: str
) -> None:
    """These passed validation and ``doctor``, then ``send`` crashed (a date overflow) or
    mailed broken links: every numeric key has bounds, and base_url is checked strictly."""
    _init_with(workdir, line)
    for args in (("doctor",), ("send", "--yes")):
        _one_line_exit_2(run_cli(*args, cwd=workdir), message)


def test_huge_numbers_from_the_environment_are_out_of_range(workdir: Path) -> None:
    result = run_cli("doctor", cwd=workdir, env={"WEEKLY_MAILER_PORT": "9" * 400})
    _one_line_exit_2(result, "Error: port: '99999999999")
    assert "is out of range (from environment variable WEEKLY_MAILER_PORT)" in result.stderr


def test_a_config_file_that_is_not_utf8_is_one_line(workdir: Path) -> None:
    (workdir / "weekly_mailer.toml").write_bytes(b'list_name = "Caf\xe9 News"\n')
    for args in (("doctor",), ("subscribers", "count")):
        result = run_cli(*args, cwd=workdir)
        _one_line_exit_2(result, "Error: config: weekly_mailer.toml is not UTF-8 text")
        assert "(byte 0xe9 at offset 16)" in result.stderr
