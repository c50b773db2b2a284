"""Shared fixtures: settings on a temporary SQLite file, PostgreSQL, a real SMTP server, the CLI."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.schema import migrate
from weekly_mailer.config import Settings
from weekly_mailer.store.db import Database

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seeds" / "000_495e8089be07fca3.txt"
PG_URL = os.environ.get(
    "WEEKLY_MAILER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("WEEKLY_MAILER_TEST_REQUIRE_PG") == "1"
ARTIFACTS = ROOT / "tests" / "artifacts"

# A suite started in the background by a shell without job control inherits SIGINT ignored, and
# every command it starts would too: Python then installs no KeyboardInterrupt, so the Ctrl-C
# tests (import, archive) ran to the end and proved nothing (or skipped). The commands get
# SIGINT as from a terminal: a handler of this process is reset to the default at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# own_pg: a private PostgreSQL cluster for the tests that stop or restart the database.
pytest_plugins = ["tests.support.postgres"]


def pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"PostgreSQL at {PG_URL} is not reachable: {exc}".splitlines()[0]


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL URL; skips where absent unless WEEKLY_MAILER_TEST_REQUIRE_PG=1."""
    reason = pg_available()
    if reason:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required here (WEEKLY_MAILER_TEST_REQUIRE_PG=1): {reason}")
        pytest.skip(reason)
    return PG_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty schema-isolated database on the PostgreSQL server."""
    import psycopg

    name = f"wm_test_{uuid.uuid4().hex[:12]}"
    admin = pg_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_server.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _journals_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The delivery journals of a PostgreSQL database go under $XDG_STATE_HOME: a test's own
    (its subprocesses inherit it), not the home folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture
def seed_path() -> Path:
    if not SEED.exists():
        reason = f"the seed article is not beside the checkout ({SEED})"
        if os.environ.get("WEEKLY_MAILER_TEST_REQUIRE_SEED") == "1":
            pytest.fail(f"the seed article is required here: {reason}")
        pytest.skip(reason)
    return SEED


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'test.db'}",
        backend_url=f"file://{tmp_path / 'outbox'}",
        secret_key="test-secret-key-not-for-production",
        base_url="https://news.example.org",
        from_address="In Brief <news@example.org>",
        list_name="In Brief",
        list_id="inbrief.example.org",
        postal_address="1 Example Street, Springfield",
    )


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    migrate(settings.database_url)  # a copy of a migrated template where it is a new SQLite file
    db = Database(settings)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working directory with no WEEKLY_MAILER_* variables leaking in."""
    for key in list(os.environ):
        if key.startswith("WEEKLY_MAILER_") and not key.startswith("WEEKLY_MAILER_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def init_in(folder: Path) -> None:
    """`weekly-mailer init` in ``folder``, run in this process: the starter config and the
    migrated database a test starts from, without an interpreter's start-up (init as a real
    subprocess is tested by tests/cli/test_first_hour.py and tests/store/test_file_modes.py)."""
    from weekly_mailer.cli import main

    with contextlib.chdir(folder):
        result = CliRunner().invoke(main, ["init"], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m weekly_mailer ARGS`` as a real subprocess."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WEEKLY_MAILER_") or k.startswith("WEEKLY_MAILER_TEST_")
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "weekly_mailer", *args],
        cwd=cwd,
        env=full_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
