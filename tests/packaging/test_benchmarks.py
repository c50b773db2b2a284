"""The benchmarks still run (tiny sizes): a benchmark that rots unseen measures nothing.

Figures are never asserted here; speed is measured by running the scripts themselves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "bench_import": ["--rows", "2000", "--no-pg"],
    "bench_compose": ["--recipients", "300", "--reference", "20"],
    "bench_run": ["--subscribers", "100", "--floor-messages", "200"],
    "bench_send": ["--quick", "--subscribers", "100", "--floor-messages", "200"],
    "bench_dkim": ["--n", "20"],
    "bench_web": [
        "--requests",
        "50",
        "--seconds",
        "5",
        "--connections",
        "2",
        "--subscribers",
        "60",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *CASES[name]],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "floor" in result.stdout


@pytest.mark.slow
@pytest.mark.postgres
def test_the_workers_benchmark_runs(pg_server: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_workers.py"), "--quick"]
        + ["--subscribers", "200", "--pg", pg_server],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "floor: 1 worker at" in result.stdout


@pytest.mark.slow
@pytest.mark.postgres
def test_enqueue_benchmark_runs(pg_server: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_enqueue.py"), "--subscribers", "2000",
         "--rows", "10000", "--batch", "50", "--pg", pg_server],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "floor" in result.stdout and "claim 50 of the issue" in result.stdout
