"""The SQLite database holds subscribers' addresses: its files are readable by the owner only."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import run_cli
from weekly_mailer.store.db import make_engine


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable (the subprocesses inherit it)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_the_database_like_the_config_0600(workdir: Path, open_umask: None) -> None:
    result = run_cli("init", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert _mode(workdir / "weekly_mailer.toml") == 0o600
    assert _mode(workdir / "weekly_mailer.db") == 0o600


def test_wal_and_shm_are_private_while_in_use(tmp_path: Path, open_umask: None) -> None:
    db = tmp_path / "live.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x TEXT)"))
            conn.execute(text("INSERT INTO t VALUES ('ann@example.org')"))
        with engine.connect() as conn:  # the pool keeps the connection: -wal and -shm stay
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
            wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
            assert wal.exists() and shm.exists()
            assert (_mode(db), _mode(wal), _mode(shm)) == (0o600, 0o600, 0o600)
    finally:
        engine.dispose()


def test_an_existing_database_keeps_the_mode_its_operator_chose(
    tmp_path: Path, open_umask: None
) -> None:
    db = tmp_path / "shared.db"
    db.touch(mode=0o640)
    db.chmod(0o640)
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x TEXT)"))
    finally:
        engine.dispose()
    assert _mode(db) == 0o640
