"""A PostgreSQL cluster of the test's own, for the tests that stop or restart the database.

The shared server (127.0.0.1:5432) must never be restarted: other tests use it. ``OwnPostgres``
runs ``initdb`` and ``pg_ctl`` (as the ``postgres`` user when the tests run as root) on a free
loopback port, in a temporary folder, and removes it all when it is closed; the ``own_pg``
fixture gives one per test, stopped in a ``finally`` whatever the test did to it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path(os.environ.get("WEEKLY_MAILER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing() -> str | None:
    """None when initdb and pg_ctl are here, else the reason."""
    for tool in ("initdb", "pg_ctl"):
        if not (BIN / tool).exists():
            return f"{BIN / tool} is missing (apt-get install postgresql)"
    return None


class OwnPostgres:
    """A private PostgreSQL cluster: ``start()``, ``stop()``, ``restart()``, ``close()``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="wm-own-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.sockets.mkdir()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:  # initdb refuses root; the folder must be the postgres user's
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self.root.chmod(0o700)
        self._pg(BIN / "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                 "--no-sync", "-E", "UTF8", timeout=120)  # fmt: skip

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``weekly_mailer`` database (made by the first start)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/weekly_mailer"

    def _pg(self, *command: str | Path, timeout: float = 60) -> str:
        args = [str(c) for c in command]
        if self._as_postgres:
            args = ["runuser", "-u", "postgres", "--", *args]
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd="/")
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}{log}")
        return done.stdout

    def _ctl(self, action: str, *extra: str, timeout: float = 120) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg(BIN / "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                 "-t", str(int(timeout)), "-o", options, *extra, action,
                 timeout=timeout + 10)  # fmt: skip

    def start(self) -> OwnPostgres:
        self._ctl("start")
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = 'weekly_mailer'"
            if not conn.execute(query).fetchone():
                conn.execute("CREATE DATABASE weekly_mailer")
        return self

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: smart, fast or immediate)."""
        self._ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m MODE``: every connection is cut, the server is back when it ends."""
        self._ctl("restart", "-m", mode)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def close(self) -> None:
        """Stop it if it runs (immediately: nothing here needs a clean shutdown), remove it."""
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        deadline = time.monotonic() + 10
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    """A started private PostgreSQL cluster (``.url``), free to stop and restart; skips where
    PostgreSQL's binaries are absent unless WEEKLY_MAILER_TEST_REQUIRE_PG=1."""
    reason = missing()
    if reason:
        if os.environ.get("WEEKLY_MAILER_TEST_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL is required here (WEEKLY_MAILER_TEST_REQUIRE_PG=1): {reason}")
        pytest.skip(reason)
    server = OwnPostgres()
    try:
        yield server.start()
    finally:
        server.close()
