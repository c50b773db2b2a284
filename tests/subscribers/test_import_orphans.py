"""A killed ``subscribers import`` leaves no process behind: its validating workers (forked by
the forkserver, so not the importer's own children) end with it, however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import init_in


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc (parent pid is field 4 of /proc/PID/stat)."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(pid: int) -> dict[int, int]:
    """Each descendant of ``pid`` with its depth (1: a child, 2: a grandchild, …)."""
    tree, found, todo = _children(), {}, [(pid, 0)]
    while todo:
        parent, depth = todo.pop()
        for child in tree.get(parent, []):
            found[child] = depth + 1
            todo.append((child, depth + 1))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize(
    "how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name
)
def test_a_killed_import_leaves_no_worker_alive(workdir: Path, how: signal.Signals) -> None:
    init_in(workdir)
    big = workdir / "big.csv"
    with big.open("w", encoding="utf-8") as out:
        out.write("email,name\n")
        for i in range(400_000):  # many chunks of 5,000 lines: the pool starts
            out.write(f"reader{i}@example{i % 97}.org,Reader {i}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEEKLY_MAILER_")}
    importer = subprocess.Popen(
        [sys.executable, "-m", "weekly_mailer", "subscribers", "import", "--confirmed", str(big)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and importer.poll() is None:
            seen.update(_descendants(importer.pid))
            if sum(1 for depth in seen.values() if depth >= 2) >= 2:  # forkserver's workers
                break
            time.sleep(0.05)
        assert importer.poll() is None, "the import ended before its workers were seen"
        workers = [pid for pid, depth in seen.items() if depth >= 2]
        assert len(workers) >= 2, seen
        time.sleep(0.5)  # mid-import: the workers are busy validating
        seen.update(_descendants(importer.pid))
        importer.send_signal(how)
        importer.wait(timeout=30)
        assert importer.returncode != 0, f"the import ran to its end: {how.name} did not stop it"
        time.sleep(2)
        left = [pid for pid in seen if _alive(pid)]
        assert left == [], f"still alive 2 s after {how.name}: {left} of {sorted(seen)}"
    finally:
        if importer.poll() is None:
            importer.kill()
            importer.wait()
        for pid in [p for p in seen if _alive(p)]:  # a failed run cleans up after itself
            os.kill(pid, signal.SIGKILL)
