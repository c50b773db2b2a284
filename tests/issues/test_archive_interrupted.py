"""``issues archive`` stopped (SIGKILL, Ctrl-C) just after one issue's commit, then rerun: the
file reads whole with ``gzip.open`` and ``zcat``, holds every archived row, and is 0600."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from tests.conftest import run_cli
from tests.support.delivery import add_subscribers, make_issue
from weekly_mailer.config import load_settings
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery

NOW = dt.datetime(2026, 11, 25, 16, 0, tzinfo=dt.UTC)
READERS = 8000
WEEKS = (dt.date(2026, 10, 28), dt.date(2026, 11, 4), dt.date(2026, 11, 11))


def _prepare(tmp: Path) -> tuple[dict[str, str], set[int]]:
    env = {"WEEKLY_MAILER_DATABASE_URL": f"sqlite:///{tmp / 'mailer.db'}"}
    assert run_cli("init", cwd=tmp, env=env).returncode == 0
    with Database(load_settings(tmp / "weekly_mailer.toml", environ=env)) as db:
        with db.sessions.begin() as s:
            add_subscribers(s, READERS)
            for week in WEEKS:
                issue = make_issue(s, week)
                outbox.enqueue(s, issue, now=NOW)
                s.execute(update(Delivery).where(Delivery.issue_id == issue.id)
                          .values(status="sent", sent_at=NOW, last_code=250))  # fmt: skip
                issue.status = "sent"
        with db.sessions.begin() as s:
            ids = set(s.scalars(select(Delivery.id)))
    return env, ids


def _left(tmp: Path, env: dict[str, str]) -> int:
    with Database(load_settings(tmp / "weekly_mailer.toml", environ=env)) as db:
        with db.sessions.begin() as s:
            return int(s.scalar(select(func.count()).select_from(Delivery)) or 0)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_archive_stopped_after_a_commit_then_rerun_reads_whole(
    tmp_path: Path, sig: signal.Signals
) -> None:
    env, ids = _prepare(tmp_path)
    before = len(ids)
    assert before == READERS * len(WEEKS)
    out = tmp_path / "old.jsonl.gz"
    args = ["issues", "archive", "--before", "2026-11-18", "--to", str(out)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WEEKLY_MAILER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "weekly_mailer", *args],
        cwd=tmp_path, env={**full_env, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Issue #1 "), first  # committed: the next issue is under way
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode == 0:  # the stop arrived after the last issue: nothing was cut short
        pytest.skip("the archive had finished before the signal arrived (a loaded machine)")
    assert "Traceback" not in err
    stopped_with = _left(tmp_path, env)
    assert stopped_with < before  # the first issue's rows did leave the table

    again = run_cli(*args, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert _left(tmp_path, env) == 0

    with gzip.open(out, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    read_ids = {r["id"] for r in rows}
    assert read_ids == ids  # every archived row, read back
    assert len(rows) - len(read_ids) <= READERS  # at most one issue twice (stop after its write)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    zcat = shutil.which("zcat")
    if zcat:
        shown = subprocess.run([zcat, str(out)], capture_output=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.count(b"\n") == len(rows)
    print(f"{sig.name}: {before} rows before, {stopped_with} left after the stop, "
          f"{len(rows)} lines read back ({len(read_ids)} distinct)")  # fmt: skip


def test_a_file_that_is_not_gzip_is_refused_not_cut(tmp_path: Path) -> None:
    env, ids = _prepare(tmp_path)
    out = tmp_path / "notes.jsonl.gz"
    out.write_bytes(b'{"mine": "a plain JSON line, not gzip"}\n')
    refused = run_cli("issues", "archive", "--before", "2026-11-18", "--to", str(out),
                      cwd=tmp_path, env=env)  # fmt: skip
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert f"{out}: not a gzip file from byte 0 on" in refused.stderr
    assert out.read_bytes() == b'{"mine": "a plain JSON line, not gzip"}\n'
    assert _left(tmp_path, env) == len(ids)  # nothing archived, nothing deleted
