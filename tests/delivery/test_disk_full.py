"""The file outbox on a full disk (a small tmpfs the test mounts; the tests run as root): `send`
stops with one line, loses nobody, leaves no half-written file, and a rerun once there is room
delivers everyone."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.send import Workspace, wait_for

pytestmark = pytest.mark.slow

READERS = 50


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    box = tmp_path / "box"
    box.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(box)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (FileNotFoundError, PermissionError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield box
    finally:
        subprocess.run(["umount", "-l", str(box)], capture_output=True, timeout=30)


def test_send_onto_a_full_disk_loses_nobody_and_resumes(tmp_path: Path, small_disk: Path) -> None:
    ws = Workspace(tmp_path, backend_url=f"file://{small_disk}")
    ws.add_subscribers(READERS)

    full = ws.run("send", "--yes")
    assert full.returncode == 1, full.stdout + full.stderr
    assert "Traceback" not in full.stderr
    lines = [line for line in full.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is full (No space left on device)" in lines[0], lines
    files = sorted(p.name for p in small_disk.iterdir())
    assert files and not any(name.startswith(".tmp-") for name in files)  # no half-written file
    ledger = ws.ledger()
    sent = len(ledger.get("sent", []))
    waiting = sum(len(ledger.get(s, [])) for s in ("queued", "deferred", "sending"))
    assert sent == len(files) and 0 < waiting and sent + waiting == READERS  # nobody lost
    assert not ledger.get("failed")

    grown = subprocess.run(
        ["mount", "-o", "remount,size=4m", str(small_disk)], capture_output=True, timeout=30
    )
    assert grown.returncode == 0, grown.stderr
    again = ws.run("send", "--yes")
    assert again.returncode == 0, again.stderr
    assert ws.sent_emails() == {f"reader{i:05d}@example.org" for i in range(READERS)}
    written = [p for p in small_disk.iterdir()]
    assert len(written) == READERS and not any(p.name.startswith(".tmp-") for p in written)
    print(f"full disk: {sent} written, {waiting} kept waiting: {lines[0]!r}; "
          f"after room was made: {len(written)} written")  # fmt: skip


def test_send_with_the_database_on_a_full_disk_waits_and_resumes(
    tmp_path: Path, small_disk: Path
) -> None:
    """The SQLite file fills its disk mid-send: the runner says `database unavailable` once
    (no traceback), waits, and finishes on its own once there is room; nobody lost or doubled."""
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True, timeout=30)
    # The outbox folder is on a disk of its own: only the database's disk fills (the fixture's
    # tmpfs is tmp_path/box, so the .eml files must not go there).
    eml = tmp_path / "eml"
    ws = Workspace(
        tmp_path, backend_url=f"file://{eml}",
        database_url=f"sqlite:///{small_disk / 'mail.db'}", lease_seconds=5,
    )  # fmt: skip
    ws.db_path = small_disk / "mail.db"
    readers = 3000
    ws.add_subscribers(readers)
    used = sum(p.stat().st_size for p in small_disk.iterdir()) // 1024
    subprocess.run(["mount", "-o", f"remount,size={used + 700}k", str(small_disk)], check=True)
    log = tmp_path / "send.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "weekly_mailer", "send", "--yes"],
            cwd=tmp_path, env=ws.env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            said = wait_for(lambda: b"database unavailable" in log.read_bytes(), timeout=90)
            assert said, log.read_text()
            assert proc.poll() is None  # waiting, not gone
            subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
            assert proc.wait(timeout=90) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text
    assert len(ws.sent_emails()) == readers  # everyone, once in the ledger
    assert len(list(eml.glob("*.eml"))) == readers  # one file per Message-ID
    outage = [line for line in text.splitlines() if "database unavailable" in line]
    print(f"database on a full disk: {len(outage)} outage line(s): {outage[0][:160]!r}")
