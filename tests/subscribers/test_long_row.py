"""A CSV row that is one 200 MB line is refused as ``FILE:LINE`` without being read whole: the
import's peak memory stays under 100 MB (a bound the issue names: a measurement, not a timing),
and the rows around it are imported."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from weekly_mailer.subscribers.lines import MAX_ROW_BYTES, byte_lines
from weekly_mailer.subscribers.parse import parse_rows

LONG = 200 * 1024 * 1024

# Runs the CLI as its only child and prints the child's peak resident set (ru_maxrss, KiB).
MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run([sys.executable, '-m', 'weekly_mailer', *sys.argv[1:]],"
    " capture_output=True, text=True)\n"
    "sys.stdout.write(done.stdout); sys.stderr.write(done.stderr)\n"
    "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(done.returncode)\n"
)


@pytest.mark.slow
def test_a_200_mb_line_is_one_error_and_memory_stays_flat(tmp_path: Path) -> None:
    csv = tmp_path / "huge.csv"
    with csv.open("wb") as f:
        f.write(b"email,name\nfirst@example.org,First\n")
        block = b"x" * (1 << 20)
        for _ in range(LONG // len(block)):
            f.write(block)
        f.write(b",Long\nlast@example.org,Last\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEEKLY_MAILER_")}
    env["WEEKLY_MAILER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'mailer.db'}"
    init = subprocess.run(
        [sys.executable, "-m", "weekly_mailer", "init"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, "subscribers", "import", "--confirmed", str(csv)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert errors == [f"{csv}:3: longer than 64 KB: not a subscriber row (is this a CSV file?)"]
    assert "Imported: 2 added, 0 already known, 1 bad rows." in done.stdout
    assert done.returncode == 1  # a bad row
    peak_mib = int(done.stdout.split("PEAK_KIB")[1].split()[0]) / 1024
    print(f"a {LONG // 2**20} MB line: peak RSS of the import {peak_mib:.0f} MiB")
    assert peak_mib < 100


@pytest.mark.parametrize("block", [7, 1000, 1 << 20])
def test_line_numbers_survive_the_bound_whatever_the_block(block: int) -> None:
    long = b"y" * (MAX_ROW_BYTES + 1)
    data = b"a\r\nb\n" + long + b"\nc\r" + long + b"\rd\n" + b"e" * MAX_ROW_BYTES + b"\nf"
    lines = list(byte_lines(b"", io.BytesIO(data), block=block))
    assert lines == [
        (1, b"a"), (2, b"b"), (3, None), (4, b"c"), (5, None), (6, b"d"),
        (7, b"e" * MAX_ROW_BYTES), (8, b"f"),
    ]  # fmt: skip


def test_a_long_row_in_the_middle_of_a_small_file() -> None:
    data = b"one@example.org\n" + b"z" * (MAX_ROW_BYTES * 2) + b"\ntwo@example.org\n"
    rows, errors = parse_rows(data, filename="x.csv")
    assert [r.email for r in rows] == ["one@example.org", "two@example.org"]
    assert [(e.line, e.reason.split(":")[0]) for e in errors] == [(2, "longer than 64 KB")]
