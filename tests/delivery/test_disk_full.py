"""The file outbox on a full disk (a small tmpfs the test mounts; the tests run as root): `send`
stops with one line, loses nobody, leaves no half-written file, and a rerun once there is room
delivers everyone."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.send import Workspace

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


@pytest.mark.xfail(
    strict=True,
    reason="the lead's delivery runner (an outage line `database unavailable`) is not on main "
    "yet; remove this mark when it lands",
)
def test_send_with_the_database_on_a_full_disk_loses_nobody(
    tmp_path: Path, small_disk: Path
) -> None:
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True, timeout=30)
    ws = Workspace(
        tmp_path, backend_url=f"file://{tmp_path / 'box'}",
        database_url=f"sqlite:///{small_disk / 'mail.db'}", lease_seconds=2,
    )  # fmt: skip
    ws.db_path = small_disk / "mail.db"
    readers = 3000
    ws.add_subscribers(readers)
    used = sum(p.stat().st_size for p in small_disk.iterdir()) // 1024
    subprocess.run(["mount", "-o", f"remount,size={used + 700}k", str(small_disk)], check=True)
    full = ws.run("send", "--yes")
    assert full.returncode != 0
    assert "database unavailable" in full.stdout + full.stderr
    assert "Traceback" not in full.stderr
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = ws.run("send", "--yes")
    assert again.returncode == 0, again.stderr
    assert len(ws.sent_emails()) == readers
    assert len(list((tmp_path / "box").glob("*.eml"))) == readers  # named by Message-ID
