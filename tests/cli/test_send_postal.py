"""Without ``postal_address`` (CAN-SPAM requires a physical postal address in US commercial
mail): ``send`` at a terminal asks before it goes on (a real pseudo-terminal), elsewhere warns
in one line and sends as before; ``run`` warns when it starts and the weekly job each week it
sends; ``doctor`` warns naming the key."""

from __future__ import annotations

import datetime as dt
import logging
import os
import pty
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import init_in, run_cli
from tests.support.send import Workspace
from tests.support.smtpd import SMTPServer

WARNING = (
    "Warning: postal_address is empty: CAN-SPAM requires a physical postal address in "
    "commercial mail in the United States (readers everywhere expect one); set postal_address."
)
QUESTION = "Send without a postal address in the footer? [y/N]: "


def _issues(ws: Workspace) -> int:
    con = sqlite3.connect(ws.db_path)
    try:
        return int(con.execute("SELECT count(*) FROM issue").fetchone()[0])
    finally:
        con.close()


class Terminal:
    """``weekly-mailer ARGS`` on a pseudo-terminal (stdin, stdout and stderr), as a person
    runs it."""

    def __init__(self, ws: Workspace, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "weekly_mailer", *args], cwd=ws.root, env=ws.env(),
            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
        )  # fmt: skip
        os.close(slave)
        self.seen = b""

    def expect(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen.replace(b"\r\n", b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"{text!r} not shown; the terminal shows {self.seen!r}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"{text!r} not shown; the terminal shows {self.seen!r}")
            self.seen += chunk
        return self.seen.replace(b"\r\n", b"\n").decode()

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # EIO: the child closed its end of the terminal
                    chunk = b""
                if not chunk:
                    break
                self.seen += chunk
            elif self.proc.poll() is not None:
                break
        code = self.proc.wait(timeout=10)
        os.close(self.master)
        return code, self.seen.replace(b"\r\n", b"\n").decode()


def workspace(tmp_path: Path, url: str) -> Workspace:
    ws = Workspace(tmp_path, backend_url=url, postal_address="", preflight="off", processes=1)
    ws.add_subscribers(2)
    return ws


@pytest.mark.slow
def test_at_a_terminal_send_asks_and_no_stops_before_anything_is_stored(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        ws = workspace(tmp_path, smtp.url)
        term = Terminal(ws, "send")
        shown = term.expect(QUESTION)
        assert WARNING in shown
        term.type("n")
        code, shown = term.finish()
        received = smtp.received()
    assert code == 1 and "Aborted!" in shown, shown
    assert received == [] and _issues(ws) == 0
    assert "Traceback" not in shown


@pytest.mark.slow
def test_at_a_terminal_yes_goes_on_to_the_usual_question(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        ws = workspace(tmp_path, smtp.url)
        term = Terminal(ws, "send")
        term.expect(QUESTION)
        term.type("y")
        term.expect("to 2 subscribers now? [y/N]: ")
        term.type("y")
        code, shown = term.finish()
        received = smtp.received()
    assert code == 0, shown
    assert sorted(m.rcpt_tos[0] for m in received) == [
        "reader00000@example.org", "reader00001@example.org",
    ]  # fmt: skip


def test_elsewhere_send_warns_in_one_line_and_sends(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        ws = workspace(tmp_path, smtp.url)
        result = ws.run("send", "--yes")  # stdin is no terminal here
        received = smtp.received()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.splitlines().count(WARNING) == 1, result.stderr
    assert QUESTION.strip() not in result.stdout + result.stderr
    assert len(received) == 2


def test_with_a_postal_address_nothing_is_said(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        ws = Workspace(tmp_path, backend_url=smtp.url, preflight="off", processes=1)
        ws.add_subscribers(1)
        result = ws.run("send", "--yes")
    assert result.returncode == 0 and "postal_address" not in result.stdout + result.stderr


def test_a_dry_run_warns_too(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "console://")
    result = ws.run("send", "--dry-run")
    assert result.returncode == 0
    assert WARNING in result.stderr.splitlines()


@pytest.mark.slow
def test_the_daemon_warns_when_it_starts(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "console://")
    proc = ws.start("run", "--no-web")
    try:
        deadline, err = time.monotonic() + 60, b""
        while b"daemon: sends" not in err and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1)
            if ready:
                assert proc.stderr is not None
                err += os.read(proc.stderr.fileno(), 4096)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    lines = err.decode().splitlines()
    assert any(
        line.endswith(" WARNING weekly_mailer.daemon: " + WARNING[len("Warning: ") : -1])
        for line in lines
    ), lines


def test_the_weekly_job_warns_each_week_it_sends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.scheduler.test_job import WED, Clock, add_readers, folder_with_article
    from weekly_mailer.config import Settings
    from weekly_mailer.scheduler.job import WeeklyJob
    from weekly_mailer.store.db import Database, make_engine, upgrade

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'j.db'}", secret_key="k" * 40,
        from_address="news@example.org", article_source=str(folder_with_article(tmp_path)),
    )  # fmt: skip
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    with Database(settings) as database:
        add_readers(database, "ada@example.org")
        clock = Clock(WED - dt.timedelta(hours=1))
        job = WeeklyJob(settings, database.sessions, clock=clock)
        clock.now = WED + dt.timedelta(seconds=1)
        with caplog.at_level(logging.INFO, logger="weekly_mailer"):
            job.reconcile()
    assert f"week of 2026-11-25: {WARNING[len('Warning: ') : -1]}" in [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    ]


def test_doctor_warns_naming_the_key_and_why(workdir: Path) -> None:
    init_in(workdir)
    result = run_cli("doctor", cwd=workdir)
    assert "warn  " + WARNING[len("Warning: ") : -1] in result.stdout.splitlines()
    configured = run_cli("doctor", cwd=workdir, env={"WEEKLY_MAILER_POSTAL_ADDRESS": "1 St"})
    assert "postal_address" not in configured.stdout
