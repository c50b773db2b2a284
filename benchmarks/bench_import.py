"""Import 100,000 CSV rows with 1% bad ones into SQLite and PostgreSQL.

Prints rows/second for each engine and, as the machine-independent figure, the ratio of that
rate to a floor measured in the same run: reading the same CSV with ``csv.reader`` alone.
Checks that every good row is kept and every bad row is reported.

    .venv/bin/python benchmarks/bench_import.py [--rows 100000] [--pg URL | --no-pg]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select

from weekly_mailer.store.db import make_engine, make_sessionmaker, upgrade
from weekly_mailer.store.models import Subscriber
from weekly_mailer.subscribers import import_file

BAD_KINDS = ["no-at-sign.example.org", "two@@example.org", "", "spaces in@example.org"]


def make_csv(rows: int, bad_ratio: float, seed: int = 7) -> tuple[bytes, int]:
    rng = random.Random(seed)
    out = io.StringIO()
    out.write("email,name\n")
    bad = 0
    for i in range(rows):
        if rng.random() < bad_ratio:
            out.write(f"{rng.choice(BAD_KINDS)},Bad {i}\n")
            bad += 1
        else:
            out.write(f"reader{i}@example{i % 97}.org,Reader {i}\n")
    return out.getvalue().encode(), bad


def floor_rate(data: bytes) -> float:
    start = time.perf_counter()
    n = sum(1 for _ in csv.reader(io.StringIO(data.decode())))
    return n / (time.perf_counter() - start)


def run(url: str, data: bytes, rows: int, bad: int) -> float:
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    start = time.perf_counter()
    with sessions.begin() as session:
        report = import_file(session, data, filename="bench.csv", confirmed=True)
    elapsed = time.perf_counter() - start
    with sessions.begin() as session:
        stored = session.scalar(select(func.count()).select_from(Subscriber))
    engine.dispose()
    assert len(report.errors) == bad, (len(report.errors), bad)
    assert stored == rows - bad == report.added, (stored, rows - bad, report.added)
    return rows / elapsed


def report(engine: str, rate: float, floor: float, bad: int) -> None:
    print(
        f"{engine + ':':12}{rate:10,.0f} rows/s = {rate / floor:.4f} x floor"
        f"  (every good row kept, all {bad} bad rows reported)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    data, bad = make_csv(args.rows, 0.01)
    floor = max(floor_rate(data) for _ in range(3))
    print(f"rows: {args.rows:,}  bad rows: {bad:,}  floor (csv.reader only): {floor:,.0f} rows/s")
    with tempfile.TemporaryDirectory() as tmp:
        rate = run(f"sqlite:///{Path(tmp) / 'bench.db'}", data, args.rows, bad)
        report("sqlite", rate, floor, bad)
    if not args.no_pg:
        import psycopg

        name = f"wm_bench_{uuid.uuid4().hex[:8]}"
        admin = args.pg.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            rate = run(args.pg.rsplit("/", 1)[0] + "/" + name, data, args.rows, bad)
            report("postgresql", rate, floor, bad)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
