"""Import 100,000 and 1,000,000 CSV rows (1% bad) into SQLite and PostgreSQL, as
``weekly-mailer subscribers import`` does it (streamed, validated by a process pool, committed
chunk by chunk).

Each import runs in a fresh child process, so its peak RSS is its own. Prints, per engine and
size: rows/second, the peak RSS of the importing process (its validating workers, started by a
forkserver, hold one chunk of lines each and are not in that figure), and the 1M/100k peak
ratio (the promise: at most 1.5). The machine-independent speed figure is the
ratio to a floor measured in the same run on the same rows: on SQLite an ``executemany`` of the
rows into a bare table, on PostgreSQL a ``COPY`` of them into a bare table (no validation, no
indexes). Checks that every good row is kept and every bad row reported.

    .venv/bin/python benchmarks/bench_import.py [--rows 100000 1000000] [--pg URL | --no-pg]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BAD_KINDS = ["no-at-sign.example.org", "two@@example.org", "", "spaces in@example.org"]


def make_csv(path: Path, rows: int, bad_ratio: float, seed: int = 7) -> int:
    """Write the file, a line at a time; returns how many rows are bad."""
    rng = random.Random(seed)
    bad = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name\n")
        for i in range(rows):
            if rng.random() < bad_ratio:
                out.write(f"{rng.choice(BAD_KINDS)},Bad {i}\n")
                bad += 1
            else:
                out.write(f"reader{i}@example{i % 97}.org,Reader {i}\n")
    return bad


def child(url: str, path: str) -> None:
    """Run one import the way the CLI does; print a JSON line of figures."""
    from sqlalchemy import func, select

    from weekly_mailer import subscribers as subs
    from weekly_mailer.store.db import make_engine, make_sessionmaker, upgrade
    from weekly_mailer.store.models import Subscriber

    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    importer = subs.Importer(confirmed=True, source="import:bench.csv")
    bad = 0
    start = time.perf_counter()
    with open(path, "rb") as stream:
        for chunk in subs.read_chunks(stream, filename="bench.csv"):
            with sessions.begin() as session:
                importer.apply(session, chunk.rows)
            bad += len(chunk.errors)
    elapsed = time.perf_counter() - start
    with sessions.begin() as session:
        stored = session.scalar(select(func.count()).select_from(Subscriber))
    engine.dispose()
    # VmHWM, not ru_maxrss: Linux carries the parent's RSS at fork into ru_maxrss across exec.
    status = Path("/proc/self/status").read_text()
    own = int(status.split("VmHWM:")[1].split()[0]) / 1024
    print(json.dumps({"seconds": elapsed, "bad": bad, "added": importer.report.added,
                      "stored": stored, "rss_mb": own}))  # fmt: skip


def run_child(url: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def rows_of(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as f:
        next(f)
        return [tuple(line.rstrip("\n").split(",", 1)) for line in f]  # type: ignore[misc]


def sqlite_floor(path: Path, tmp: Path) -> float:
    """executemany of the same rows into a bare SQLite table (WAL, as the service uses it)."""
    rows = rows_of(path)
    conn = sqlite3.connect(tmp / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (email TEXT, name TEXT)")
    start = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def pg_floor(path: Path, url: str) -> float:
    """COPY of the same rows into a bare PostgreSQL table."""
    import psycopg

    rows = rows_of(path)
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("CREATE TABLE floor_t (email text, name text)")
        start = time.perf_counter()
        with conn.cursor().copy("COPY floor_t (email, name) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - start
        conn.execute("DROP TABLE floor_t")
    return len(rows) / elapsed


def fresh_pg(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = f"wm_bench_{uuid.uuid4().hex[:8]}"
    admin = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


def drop_pg(admin_url: str, name: str) -> None:
    import psycopg

    admin = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    engines = ["sqlite"] + ([] if args.no_pg else ["postgresql"])
    peaks: dict[str, list[float]] = {e: [] for e in engines}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for rows in args.rows:
            path = tmp / f"bench_{rows}.csv"
            bad = make_csv(path, rows, 0.01)
            print(f"rows: {rows:,}  bad rows: {bad:,}")
            for engine in engines:
                if engine == "sqlite":
                    db = tmp / f"bench_{rows}.db"
                    floor = sqlite_floor(path, tmp)
                    (tmp / "floor.db").unlink()
                    got = run_child(f"sqlite:///{db}", path)
                    what = "executemany"
                else:
                    url, name = fresh_pg(args.pg)
                    try:
                        floor = pg_floor(path, url)
                        got = run_child(url, path)
                    finally:
                        drop_pg(args.pg, name)
                    what = "COPY"
                assert got["bad"] == bad, (got, bad)
                assert got["stored"] == rows - bad == got["added"], (got, rows - bad)
                rate = rows / got["seconds"]
                peaks[engine].append(got["rss_mb"])
                print(
                    f"  {engine + ':':12}{rate:9,.0f} rows/s ({got['seconds']:.1f} s) = "
                    f"{rate / floor:.3f} x floor (bare {what}: {floor:,.0f} rows/s); "
                    f"peak RSS {got['rss_mb']:.0f} MB; all good rows kept, {bad:,} bad reported"
                )
    if len(args.rows) > 1:
        for engine, values in peaks.items():
            print(
                f"peak RSS {engine}: {args.rows[-1]:,} rows / {args.rows[0]:,} rows = "
                f"{values[-1] / values[0]:.2f}"
            )


if __name__ == "__main__":
    main()
