"""Scale-out: 1, 2 and 4 `weekly-mailer worker` processes on PostgreSQL, all to Postfix's
`smtp-sink`, one issue to --subscribers readers.

One run builds a PostgreSQL database once (migrated, the readers imported, the seed article's
issue composed and enqueued), then for each worker count copies it (`CREATE DATABASE … TEMPLATE`,
so every run starts from the same queued rows), starts that many `worker` subprocesses, and
times them from the moment the last one is up until every row is `sent`. It prints msg/s for
each and, as the machine-independent figure, the ratio to one worker measured in the same run
(the floor), plus Postfix's `smtp-source` over the same connections as the relay-side ceiling.

    .venv/bin/python benchmarks/bench_workers.py [--subscribers 20000] [--workers 1,2,4]
        [--concurrency 4] [--batch-size 100] [--engine NAME] [--processes 1] [--pg URL]
        [--quick]

``--engine NAME`` adds ``?engine=NAME`` to the backend URL (e.g. ``pipelined``); without it the
branch's default SMTP engine is measured. Needs the PostgreSQL server (``--pg``, default the
test server) and /usr/sbin/smtp-sink (Debian: `apt-get install postfix`; without it aiosmtpd
stands in, much slower). Every worker on this machine shares its cores: on a 2-core machine
four workers cannot be four times one; see docs/scaling.md for what the figures mean.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seeds" / "000_495e8089be07fca3.txt"
sys.path.insert(0, str(ROOT))

import tomli_w  # noqa: E402
from benchmarks._postfix import sink, smtp_source  # noqa: E402

from weekly_mailer.config import FIELDS  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ARTICLE = """---
title: A week in the garden
date: 2026-11-20
---
Nothing much grows in November, which is the point: the soil rests.
"""


def admin_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def database_url(base: str, name: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + name


@contextlib.contextmanager
def databases(pg: str) -> Iterator[list[str]]:
    """Names of the databases made in the block (dropped at its end, whatever happens)."""
    import psycopg

    made: list[str] = []
    try:
        yield made
    finally:
        with psycopg.connect(admin_dsn(pg), autocommit=True) as conn:
            for name in made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_database(pg: str, name: str, made: list[str], *, template: str | None = None) -> str:
    import psycopg

    with psycopg.connect(admin_dsn(pg), autocommit=True) as conn:
        like = f' TEMPLATE "{template}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{like}')
    made.append(name)
    return database_url(pg, name)


def write_config(root: Path, url: str, address: str, args: argparse.Namespace) -> Path:
    query = f"?engine={args.engine}" if args.engine else ""
    article = SEED if SEED.exists() else root / "article.md"
    if not SEED.exists():
        article.write_text(ARTICLE)
    values = {
        "database_url": url,
        "backend_url": f"smtp://{address}{query}",
        "secret_key": "bench-secret",
        "from_address": "Bench <news@example.org>",
        "base_url": "https://news.example.org",
        "postal_address": "1 Example Street, Springfield",
        "article_source": str(article),
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "max_per_connection": 1000,
        "log_level": "WARNING",
    }
    if "processes" in FIELDS:  # a version whose `worker` can run several delivery processes
        values["processes"] = args.processes
    elif args.processes != 1:
        raise SystemExit("--processes: this version has no `processes` setting")
    config = root / f"{url.rsplit('/', 1)[1]}.toml"
    config.write_text(tomli_w.dumps(values))
    return config


def prepare(config: Path, n: int) -> int:
    """Migrate, import ``n`` readers, compose and enqueue the week's issue; its id."""
    from weekly_mailer import issues
    from weekly_mailer import subscribers as subs
    from weekly_mailer.clock import utcnow
    from weekly_mailer.config import load_settings
    from weekly_mailer.store.db import Database, make_engine, upgrade

    settings = load_settings(config, environ={})
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    csv = "email,name\n" + "".join(f"reader{i:07d}@example.org,Reader {i}\n" for i in range(n))
    with Database(settings) as db:
        with db.sessions.begin() as session:
            report = subs.import_file(session, csv.encode(), filename="bench.csv", confirmed=True)
            if report.errors:
                raise SystemExit(f"import failed: {report.errors[:3]}")
        with db.sessions.begin() as session:
            look = issues.look_at_week(session, settings, now=utcnow())
        plan = issues.plan_week(look, settings)
        with db.sessions.begin() as session:
            prepared = issues.prepare_week(session, plan, now=utcnow())
            if prepared.queued != n:
                raise SystemExit(f"enqueued {prepared.queued} rows, expected {n}")
            return int(prepared.issue.id)


def sent_count(url: str) -> tuple[int, int]:
    """(sent, not yet sent) rows, with one plain query (no ORM, no pool: cheap to poll)."""
    import psycopg

    with psycopg.connect(admin_dsn(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'sent'), "
            "count(*) FILTER (WHERE status IN ('queued', 'deferred', 'sending')) FROM delivery"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def sizes(url: str) -> tuple[float, float]:
    """Bytes per ``delivery`` row and per ``subscriber`` row, indexes and TOAST included."""
    import psycopg

    with psycopg.connect(admin_dsn(url)) as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size('delivery')::float / greatest(1, "
            "(SELECT count(*) FROM delivery)), pg_total_relation_size('subscriber')::float / "
            "greatest(1, (SELECT count(*) FROM subscriber))"
        ).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


def backend_cpu(url: str) -> tuple[float | None, int]:
    """CPU seconds (user + system) of the PostgreSQL server processes serving ``url``'s
    database now, read from /proc (only when the server runs on this machine), and how many
    connections that is."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_dsn(url)) as conn:
        pids = [
            int(r[0])
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        ]
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    except (OSError, IndexError, ValueError):
        return None, len(pids)
    return (total if pids else None), len(pids)


def run_workers(
    config: Path, url: str, k: int, n: int, timeout: float
) -> tuple[float, float, float | None, int]:
    """Start ``k`` workers on the copied database: msg/s from the last one up to all sent, the
    workers' CPU (user + system) milliseconds per message, start-up included, the database
    server's (``None`` when it is not on this machine) and the workers' database connections."""
    env = {k_: v for k_, v in os.environ.items() if not k_.startswith("WEEKLY_MAILER_")}
    env["WEEKLY_MAILER_CONFIG"] = str(config)
    logs = [config.with_suffix(f".w{i}.err") for i in range(k)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for log in logs:
            with log.open("wb") as err:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "weekly_mailer", "worker"],
                        cwd=config.parent,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                    )
                )
        deadline = time.monotonic() + 60
        while not all("started." in log.read_text(errors="replace") for log in logs):
            failed(procs, logs)
            if time.monotonic() > deadline:
                raise SystemExit("the workers did not start within 60 s")
            time.sleep(0.02)
        started = time.perf_counter()
        before, _ = sent_count(url)
        deadline = time.monotonic() + timeout
        while True:
            sent, left = sent_count(url)
            if left == 0:
                break
            failed(procs, logs)
            if time.monotonic() > deadline:
                raise SystemExit(f"{k} workers: {left} rows still unsent after {timeout:.0f} s")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        if sent != n:
            raise SystemExit(f"{k} workers: {sent} of {n} rows sent (see {logs[0].parent})")
        server, connections = backend_cpu(url)
        cpu = stop(procs)
        per_msg = None if server is None else 1000 * server / n
        return (n - before) / elapsed, 1000 * cpu / n, per_msg, connections
    finally:
        stop(procs)


def stop(procs: list[subprocess.Popen[bytes]]) -> float:
    """SIGTERM every worker still running and reap them all; their CPU seconds."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    cpu = 0.0
    deadline = time.monotonic() + 60
    for proc in procs:
        while proc.returncode is None:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                cpu += usage.ru_utime + usage.ru_stime
            elif time.monotonic() > deadline:
                proc.kill()
            else:
                time.sleep(0.02)
    return cpu


def failed(procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    for proc, log in zip(procs, logs, strict=True):
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"a worker exited ({proc.returncode}):\n{tail}")


def message_size() -> int:
    """The seed article's personalised size (what one reader gets); 17,300 bytes if the
    composer's API has moved."""
    import datetime as dt

    try:
        from weekly_mailer.articles import load_article
        from weekly_mailer.compose import Recipient, compose_issue, make_message_id, personalise
        from weekly_mailer.config import Settings

        week = dt.date(2026, 11, 25)
        settings = Settings(secret_key="bench", postal_address="1 Example Street")
        issue = compose_issue(load_article(str(SEED)), settings, send_week=week, issue_id=1)
        who = Recipient(1, "reader0000001@example.org", "Reader 1", "https://x.example/u/1")
        now = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
        mid = make_message_id(settings, week, 1)
        return len(personalise(issue.skeleton, who, message_id=mid, date=now))
    except Exception:  # noqa: BLE001 - only the reference line depends on it
        return 17300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=20000)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--concurrency", type=int, default=4, help="SMTP connections per worker")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--engine", default="", help="backend_url ?engine= (default: none)")
    parser.add_argument("--processes", type=int, default=1, help="per `worker`, if settable")
    parser.add_argument("--pg", default=os.environ.get("WEEKLY_MAILER_TEST_PG_URL", PG))
    parser.add_argument("--quick", action="store_true", help="500 readers, 1 and 2 workers")
    args = parser.parse_args()
    counts = [int(c) for c in re.split(r"[,\s]+", args.workers.strip()) if c]
    if args.quick:
        args.subscribers = min(args.subscribers, 500)
        counts = counts[:2]
    if not SEED.exists():
        print(f"(the seed article {SEED} is missing: a short article instead; sizes differ)")
    if not counts or min(counts) < 1:
        raise SystemExit("--workers: give one or more counts of at least 1")
    n = args.subscribers
    print(
        f"{n:,} readers, {args.concurrency} SMTP connections and batches of {args.batch_size} "
        f"per worker, engine {args.engine or 'default'}, {os.cpu_count()} CPUs"
        + (f", {args.processes} delivery processes per worker" if "processes" in FIELDS else "")
    )
    tag = uuid.uuid4().hex[:8]
    with sink() as address, databases(args.pg) as made, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base_url = create_database(args.pg, f"wm_bench_{tag}_base", made)
        started = time.perf_counter()
        prepare(write_config(root, base_url, address, args), n)
        print(
            f"prepared (migrate, import, compose, enqueue): {time.perf_counter() - started:.1f} s"
        )
        queued_row, subscriber_row = sizes(base_url)
        results: dict[int, tuple[float, float, float | None, int]] = {}
        sent_row = 0.0
        for k in counts:
            url = create_database(args.pg, f"wm_bench_{tag}_{k}w", made, template=made[0])
            config = write_config(root, url, address, args)
            results[k] = run_workers(config, url, k, n, timeout=max(120.0, n / 20))
            sent_row = sent_row or sizes(url)[0]
        size = message_size() if SEED.exists() else len(ARTICLE)
        ceiling = smtp_source(
            address,
            messages=min(n, 20000),
            size=size,
            connections=args.concurrency * max(counts),
        )
    floor = results[1 if 1 in results else counts[0]][0]
    label = "1 worker" if 1 in results else f"{counts[0]} workers"
    head = f"{'workers':>7} | {'msg/s':>9} | {'x ' + label:>12} | {'worker CPU ms/msg':>17}"
    print(head + f" | {'PostgreSQL CPU ms/msg':>21} | {'connections':>11}")
    for k, (rate, cpu, server, connections) in results.items():
        shown = "n/a" if server is None else f"{server:.2f}"
        print(
            f"{k:>7} | {rate:9,.0f} | {rate / floor:12.2f} | {cpu:17.2f} | {shown:>21} | "
            f"{connections:>11}"
        )
    print(f"floor: {label} at {floor:,.0f} msg/s (the ratios above are against it)")
    print(
        f"PostgreSQL bytes per row, indexes included: subscriber {subscriber_row:,.0f}, "
        f"delivery {queued_row:,.0f} queued, {sent_row:,.0f} after the send (before vacuum)"
    )
    if ceiling is not None:
        print(
            f"smtp-source, {args.concurrency * max(counts)} connections, {size:,}-byte messages: "
            f"{ceiling:,.0f} msg/s (the sink's side, for scale)"
        )


if __name__ == "__main__":
    main()
