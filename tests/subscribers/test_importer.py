"""Streaming import: chunks validated in worker processes come back in file order with the same
rows and errors as in one process; duplicates and known addresses are recognised across chunks
on SQLite and PostgreSQL; a killed import keeps its committed chunks and can be run again."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from weekly_mailer import subscribers as subs
from weekly_mailer.config import load_settings
from weekly_mailer.store.db import make_engine, make_sessionmaker, upgrade
from weekly_mailer.store.models import Subscriber, SubscriberEvent


def _messy_file() -> bytes:
    lines = [b"\xef\xbb\xbfEmail Address;Name"]
    for i in range(300):
        if i % 37 == 0:
            lines.append(f"broken{i}@;Bad {i}".encode())
        elif i % 53 == 0:
            lines.append(b"bad\xff@example.org;X")
        elif i % 71 == 0:
            lines.append(f'q{i}@example.org;"unclosed'.encode())
        else:
            lines.append(f"Reader{i}@Example.ORG;Reader {i}".encode())
    body = b"\r\n".join(lines[:150]) + b"\r" + b"\n".join(lines[150:]) + b"\n"
    return body


def test_worker_processes_return_what_one_process_does() -> None:
    data = _messy_file()
    inline = list(subs.read_chunks(io.BytesIO(data), filename="m.csv", workers=0, chunk_rows=40))
    pooled = list(subs.read_chunks(io.BytesIO(data), filename="m.csv", workers=2, chunk_rows=40))
    assert len(pooled) == len(inline) == 8  # 301 lines in chunks of 40
    rows = [r for c in pooled for r in c.rows]
    errors = [(e.line, e.reason) for c in pooled for e in c.errors]
    assert rows == [r for c in inline for r in c.rows]
    assert errors == [(e.line, e.reason) for c in inline for e in c.errors]
    assert [r.line for r in rows] == sorted(r.line for r in rows)  # file order
    assert [line for line, _ in errors] == sorted(line for line, _ in errors)
    assert rows[0].email == "Reader1@example.org" and rows[0].key == "reader1@example.org"
    assert (2, "'broken0@' is not a valid address: There must be something after the @-sign.") \
        in errors  # fmt: skip
    assert (55, "not valid UTF-8 (save the file as UTF-8)") in errors
    assert (73, "unclosed quote") in errors
    # The same rows as the whole-file reader the tests of the rules use.
    whole_rows, whole_errors = subs.parse_rows(data, filename="m.csv")
    assert whole_rows == rows and [(e.line, e.reason) for e in whole_errors] == errors


def _apply_in_chunks(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    try:
        with sessions.begin() as s:
            subs.add(s, "known@example.org", confirmed=True)
            subs.add(s, "left@example.org", confirmed=True)
            gone = subs.get_by_email(s, "left@example.org")
            assert gone is not None
            subs.unsubscribe(s, gone, source="test")
        names = ["known"] + [f"n{i}" for i in range(25)] + ["N3", "known", "left", "n24"]
        data = ("email\n" + "".join(f"{n}@example.org\n" for n in names)).encode()
        importer = subs.Importer(confirmed=True, source="import:c.csv")
        for chunk in subs.read_chunks(io.BytesIO(data), filename="c.csv", chunk_rows=7):
            with sessions.begin() as s:  # committed chunk by chunk, as the command does
                importer.apply(s, chunk.rows)
        r = importer.report
        assert (r.added, r.unchanged, r.kept_unsubscribed, r.duplicates) == (25, 1, 1, 3)
        with sessions.begin() as s:
            assert s.scalar(select(func.count()).select_from(Subscriber)) == 27
            n3 = subs.get_by_email(s, "n3@example.org")
            assert n3 is not None and n3.status == "active" and n3.source == "import:c.csv"
            kinds = s.scalars(
                select(SubscriberEvent.kind)
                .where(SubscriberEvent.subscriber_id == n3.id)
                .order_by(SubscriberEvent.id)
            ).all()
            assert kinds == ["subscribed", "confirmed"]
            assert n3.consent_at is not None and n3.confirmed_at == n3.consent_at
    finally:
        engine.dispose()


def test_duplicates_across_chunks_sqlite(tmp_path: Path) -> None:
    _apply_in_chunks(f"sqlite:///{tmp_path / 'c.db'}")


@pytest.mark.postgres
def test_duplicates_across_chunks_postgres(pg_url: str) -> None:
    _apply_in_chunks(pg_url)


@pytest.mark.slow
def test_a_killed_import_keeps_its_chunks_and_runs_again(workdir: Path) -> None:
    tmp_path = workdir
    rows = 60_000
    (tmp_path / "big.csv").write_text(
        "email\n" + "".join(f"r{i}@example.org\n" for i in range(rows)), encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEEKLY_MAILER_")}
    cmd = [sys.executable, "-m", "weekly_mailer"]
    subprocess.run([*cmd, "init"], cwd=tmp_path, env=env, check=True, capture_output=True)
    settings = load_settings(tmp_path / "weekly_mailer.toml", environ={})
    proc = subprocess.Popen(
        [*cmd, "subscribers", "import", "big.csv", "--confirmed"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    database = sqlite3.connect(tmp_path / settings.database_url.rpartition("/")[2])
    try:  # a plain WAL reader: it never waits for the importer's write lock, so the kill
        # comes within a poll of the first committed chunk, not after the import's end
        count = "SELECT count(*) FROM subscriber"
        deadline = time.monotonic() + 60
        stored = 0
        while not stored and time.monotonic() < deadline:
            try:
                stored = database.execute(count).fetchone()[0]
            except sqlite3.OperationalError:  # the schema is not there yet
                pass
            time.sleep(0.01)
        assert proc.poll() is None  # killed half-way, not after
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kept = database.execute(count).fetchone()[0]
    finally:
        database.close()
    assert 0 < kept < rows and kept % 5000 == 0  # whole chunks only
    again = subprocess.run(
        [*cmd, "subscribers", "import", "big.csv", "--confirmed"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"Imported: {rows - kept} added, {kept} already known, 0 bad rows." in again.stdout
