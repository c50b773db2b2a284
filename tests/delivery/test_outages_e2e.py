"""Outages of the database, as an operator meets them, on real `weekly-mailer send` subprocesses
with two delivery processes and a real SMTP server that records every copy it accepts:

- PostgreSQL restarted mid-send (a cluster of the test's own: the shared server is never
  restarted): the send finishes, every reader got the issue, no traceback, one line when the
  outage begins (said before the server is back) and one when it ends (after), and the
  summary counts every message this run sent;
- SQLite held by another writer for 12 s (a second process in ``BEGIN IMMEDIATE``, three times
  a ``sqlite_busy_timeout_seconds`` of 4 s): the same, the first line said while the lock is
  still held;
- an outage longer than ``outage_limit_seconds``: the command ends with one line and exit 2.

Process faults (SIGSTOP, SIGKILL, orphans) are in test_faults_e2e.py.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support.postgres import OwnPostgres
from tests.support.send import Workspace, wait_for
from tests.support.smtpd_record import RecordingSMTPServer
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery

pytestmark = pytest.mark.slow

READERS = 3000
OUTAGE_LINE = "database unavailable"
BACK_LINE = "database available again"
SENT_THIS_RUN = re.compile(r"^This run: (\d+) sent", re.MULTILINE)


def statuses(ws: Workspace) -> dict[str, int]:
    """Delivery status -> rows, read through the project's own engine (either database)."""
    with Database(ws.settings) as db, db.sessions() as session:
        rows = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
        return {str(status): int(n) for status, n in rows}


def start_send(ws: Workspace, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "weekly_mailer", "send", "--yes"],
            cwd=ws.root, env=ws.env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def finish(proc: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def outage_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if OUTAGE_LINE in line]


def assert_one_outage(text: str, *, before: str) -> None:
    """One line when the outage began, already in ``before`` (the output when the database came
    back), and one when it ended, after it; the summary counts every reader (all were sent by
    this run, some recorded from its journals after the outage)."""
    lines = text.splitlines()
    began = outage_lines(text)
    ended = [line for line in lines if BACK_LINE in line]
    assert len(began) == 1, text
    assert len(ended) == 1, text
    assert lines.index(began[0]) < lines.index(ended[0]), text
    assert OUTAGE_LINE in before, f"the outage was not said while it lasted:\n{before}"
    assert BACK_LINE not in before, before
    sent = SENT_THIS_RUN.findall(text)
    assert sent == [str(READERS)], text
    print(f"outage lines: {began[0][:100]!r} ... {ended[0]!r}")


def assert_everyone_once(ws: Workspace, server: RecordingSMTPServer, emails: list[str]) -> None:
    copies = server.copies()
    missing = set(emails) - set(copies)
    assert not missing, f"{len(missing)} readers never got it, e.g. {sorted(missing)[:3]}"
    assert statuses(ws) == {"sent": READERS}


def test_postgresql_restarted_mid_send(tmp_path: Path, own_pg: OwnPostgres) -> None:
    """PostgreSQL stopped while two delivery processes send, and started again once they said
    so (a restart that lasts long enough to be met): one line then, one once it is back, the
    send finishes by itself, every reader got it (what the server received), no traceback."""
    with RecordingSMTPServer(delay=0.01) as server:
        ws = Workspace(
            tmp_path, backend_url=server.url, database_url=own_pg.url, processes=2,
            concurrency=4, journal_dir=str(tmp_path / "journal"), lease_seconds=10,
        )  # fmt: skip
        emails = ws.add_subscribers(READERS)
        log = tmp_path / "send.log"
        proc = start_send(ws, log)
        try:
            assert wait_for(lambda: server.count() >= 500, timeout=120), log.read_text()
            assert proc.poll() is None, log.read_text()
            own_pg.stop("fast")  # every connection cut, and refused until it is back
            during = server.count()
            said = wait_for(lambda: OUTAGE_LINE in log.read_text(errors="replace"), timeout=60)
            before = log.read_text(errors="replace")
            own_pg.start()
            assert said, log.read_text()
            code = finish(proc, timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        text = log.read_text(errors="replace")
        assert code == 0, text
        assert during < READERS, "the restart came after the send: it tested nothing"
        assert "Traceback" not in text, text
        assert_one_outage(text, before=before)
        assert_everyone_once_or_fewer(ws, server, emails)
        print(f"PostgreSQL stopped after {during} messages: {text.count(chr(10))} lines of output")


def assert_everyone_once_or_fewer(
    ws: Workspace, server: RecordingSMTPServer, emails: list[str]
) -> None:
    """Everyone got it; a copy the server accepted while the connection to the database was
    cut can be sent twice (the journal folds it; a row taken back is not), so copies are
    reported, not asserted to one."""
    assert_everyone_once(ws, server, emails)
    doubled = sum(n - 1 for n in server.copies().values() if n > 1)
    print(f"duplicates: {doubled}")


class SqliteWriter:
    """A second process holding SQLite's write lock (``BEGIN IMMEDIATE``) until released."""

    HOLD = (
        "import sqlite3, sys\n"
        "con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)\n"
        "con.execute('BEGIN IMMEDIATE')\n"
        "con.execute('UPDATE subscriber SET name = name WHERE id = 1')\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
        "con.execute('COMMIT')\n"
    )

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.HOLD, str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == b"held", self.proc.stderr.read() if self.proc.stderr else b""

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.communicate(timeout=30)  # its stdin closed: it commits and ends


def locked(path: Path) -> bool:
    """Whether another connection holds the write lock now."""
    con = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        con.close()


def test_sqlite_held_by_another_writer_past_the_busy_timeout(tmp_path: Path) -> None:
    """Another process holds the write lock mid-send for 12 s, three times
    ``sqlite_busy_timeout_seconds`` (4 s here; 30 s by default): one line while it is held,
    one when it is released, the send finishes by itself, nobody lost, no traceback."""
    with RecordingSMTPServer(delay=0.01) as server:
        ws = Workspace(tmp_path, backend_url=server.url, processes=2, concurrency=4,
                       lease_seconds=60, sqlite_busy_timeout_seconds=4)  # fmt: skip
        emails = ws.add_subscribers(READERS)
        log = tmp_path / "send.log"
        proc = start_send(ws, log)
        writer: SqliteWriter | None = None
        try:
            assert wait_for(lambda: server.count() >= 300, timeout=120), log.read_text()
            writer = SqliteWriter(ws.db_path)
            held_at = time.monotonic()
            while time.monotonic() - held_at < 12:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.5)
            said = log.read_text(errors="replace")
            writer.release()
            code = finish(proc, timeout=300)
        finally:
            if writer is not None:
                writer.release()
            if proc.poll() is None:
                proc.kill()
        text = log.read_text(errors="replace")
        assert code == 0, text
        assert "Traceback" not in text, text
        # Said at the first busy timeout, while the lock is held; over once it is released.
        assert_one_outage(text, before=said)
        assert_everyone_once_or_fewer(ws, server, emails)


def test_an_outage_past_outage_limit_seconds_ends_the_send_with_exit_2(
    tmp_path: Path, own_pg: OwnPostgres
) -> None:
    """PostgreSQL stopped mid-send and not started again, ``outage_limit_seconds = 3``: the send
    ends with exit 2 and one line naming the limit, no traceback."""
    with RecordingSMTPServer(delay=0.01) as server:
        ws = Workspace(
            tmp_path, backend_url=server.url, database_url=own_pg.url, processes=2,
            concurrency=4, journal_dir=str(tmp_path / "journal"), outage_limit_seconds=3,
        )  # fmt: skip
        ws.add_subscribers(READERS)
        log = tmp_path / "send.log"
        proc = start_send(ws, log)
        try:
            assert wait_for(lambda: server.count() >= 300, timeout=120), log.read_text()
            own_pg.stop("fast")
            stopped = time.monotonic()
            code = finish(proc, timeout=120)
            took = time.monotonic() - stopped
        finally:
            if proc.poll() is None:
                proc.kill()
        text = log.read_text(errors="replace")
        assert code == 2, text
        assert "Traceback" not in text, text
        ended = [line for line in text.splitlines() if "outage_limit_seconds" in line]
        assert len(ended) == 1, text
        print(f"ended {took:.1f} s after the stop: {ended[0]!r}")
