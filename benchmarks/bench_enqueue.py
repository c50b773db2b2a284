"""The outbox at a million readers on PostgreSQL: enqueue, then claim, record and the per-issue
counts with ten million delivery rows in the table.

One fresh database: --subscribers active readers (default 1,000,000) and sent issues of theirs
until the table holds --rows delivery rows (default 10,000,000; it takes minutes), made by the
database itself. Then it times, as the service runs them:

enqueue:  ``outbox.enqueue`` of a new issue for every reader (one INSERT … SELECT, committed)
floor:    the same INSERT … SELECT into a bare copy of the table (no index, no foreign key)
claim:    a batch of --batch rows of that issue (``claim(issue_id=…)``), and of any sending issue
record:   writing the batch back as sent
counts:   the per-state counts of the issue, and ``issues list`` (every issue's counts)

    .venv/bin/python benchmarks/bench_enqueue.py [--subscribers 1000000] [--rows 10000000]
        [--batch 500] [--pg URL]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from weekly_mailer import issues  # noqa: E402
from weekly_mailer.store import outbox  # noqa: E402
from weekly_mailer.store.db import make_engine, make_sessionmaker, upgrade  # noqa: E402
from weekly_mailer.store.models import Issue  # noqa: E402

NOW = dt.datetime(2026, 11, 25, 16, 0, tzinfo=dt.UTC)
ISSUE_COLUMNS = (
    "send_week, status, reason, subject, title, slug, source, source_key, canonical_url, "
    "author, summary, article, html_template, text_template, archive_html, created_at"
)


def fill(sessions: sessionmaker[Session], subscribers: int, rows: int) -> int:
    """Readers, and sent issues until the table holds ``rows - subscribers`` rows."""
    with sessions.begin() as s:
        s.execute(
            text(
                "INSERT INTO subscriber (email, email_key, name, status, created_at, updated_at,"
                " consent_source, source, bounce_count) SELECT 'r' || g || '@example.org', "
                "'r' || g || '@example.org', '', 'active', :t, :t, '', '', 0 "
                "FROM generate_series(1, :n) g"
            ),
            {"t": NOW, "n": subscribers},
        )
    old = max(rows - subscribers, 0)
    week = dt.date(2026, 11, 18)
    made = 0
    while made < old:
        week -= dt.timedelta(weeks=1)
        take = min(subscribers, old - made)
        with sessions.begin() as s:
            issue_id = s.execute(
                text(
                    f"INSERT INTO issue ({ISSUE_COLUMNS}) VALUES (:w, 'sent', '', '', '', '', "
                    "'', '', '', '', '', '{}', '', '', '', :t) RETURNING id"
                ),
                {"w": week, "t": NOW},
            ).scalar_one()
            s.execute(
                text(
                    "INSERT INTO delivery (kind, issue_id, subscriber_id, status, attempts, "
                    "created_at, next_attempt_at, sent_at, last_code, last_error) SELECT "
                    "'issue', :i, id, 'sent', 1, :t, :t, :t, 250, '' FROM subscriber "
                    "ORDER BY id LIMIT :n"
                ),
                {"i": issue_id, "t": NOW, "n": take},
            )
        made += take
        print(f"  … {made:,} old rows", flush=True)
    return made


def floor(url: str) -> float:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE floor_delivery (LIKE delivery INCLUDING DEFAULTS)")
        conn.commit()
        start = time.perf_counter()
        conn.execute(
            "INSERT INTO floor_delivery (issue_id, subscriber_id, status, attempts, created_at,"
            " next_attempt_at, last_error) SELECT 1, id, 'queued', 0, now(), now(), '' "
            "FROM subscriber WHERE status = 'active'"
        )
        conn.commit()
        elapsed = time.perf_counter() - start
        conn.execute("DROP TABLE floor_delivery")
        conn.commit()
    return elapsed


def timed(fn: Callable[[], object], times: int = 5) -> float:
    """The median of ``times`` runs, in milliseconds."""
    runs = []
    for _ in range(times):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    admin = args.pg.replace("postgresql+psycopg://", "postgresql://")
    name = f"wm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = args.pg.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        start = time.perf_counter()
        old = fill(sessions, args.subscribers, args.rows)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        print(f"made {args.subscribers:,} readers and {old:,} sent rows in "
              f"{time.perf_counter() - start:.0f} s")  # fmt: skip

        start = time.perf_counter()
        with sessions.begin() as s:
            issue = Issue(send_week=dt.date(2026, 11, 25), status="ready", subject="Bench")
            s.add(issue)
            s.flush()
            added = outbox.enqueue(s, issue, now=NOW)
            issue_id = issue.id
        enqueue_s = time.perf_counter() - start
        floor_s = floor(url)
        assert added == args.subscribers, added
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE delivery")
            total = conn.exec_driver_sql("SELECT count(*) FROM delivery").scalar_one()
            size = conn.exec_driver_sql(
                "SELECT pg_size_pretty(pg_table_size('delivery')), "
                "pg_size_pretty(pg_indexes_size('delivery'))"
            ).one()
        print(
            f"enqueue: {added:,} rows in {enqueue_s:.2f} s (floor: bare INSERT … SELECT "
            f"{floor_s:.2f} s; {enqueue_s / floor_s:.2f} x floor)"
        )
        print(f"table: {total:,} delivery rows, {size[0]} of rows and {size[1]} of indexes")

        owners = iter(range(1_000_000))
        claimed: list[outbox.ClaimedRow] = []

        def claim_issue() -> None:
            with sessions.begin() as s:
                rows, _ = outbox.claim(s, owner=f"b{next(owners)}", now=NOW, lease_seconds=300,
                                       limit=args.batch, issue_id=issue_id)  # fmt: skip
                assert len(rows) == args.batch
                claimed.extend(rows)

        def claim_any() -> None:
            with sessions.begin() as s:
                rows, _ = outbox.claim(s, owner=f"b{next(owners)}", now=NOW, lease_seconds=300,
                                       limit=args.batch)  # fmt: skip
                assert len(rows) == args.batch

        def record() -> None:
            with sessions.begin() as s:
                batch = [claimed.pop() for _ in range(min(args.batch, len(claimed)))]
                owner = "x"
                s.execute(text("UPDATE delivery SET lease_owner = 'x' WHERE id = ANY(:ids)"),
                          {"ids": [r.delivery_id for r in batch]})  # fmt: skip
                outbox.record(s, [outbox.Outcome(r, "sent", code=250) for r in batch],
                              owner=owner, now=NOW)  # fmt: skip

        def counts() -> None:
            with sessions.begin() as s:
                assert sum(outbox.counts(s, issue_id).values()) == args.subscribers

        def listing() -> None:
            with sessions.begin() as s:
                issues.list_issues(s)

        print(f"claim {args.batch} of the issue: {timed(claim_issue):8.1f} ms (median of 5)")
        print(f"claim {args.batch} of any issue: {timed(claim_any):8.1f} ms")
        print(f"record {args.batch} as sent:     {timed(record):8.1f} ms")
        print(f"counts of the issue:     {timed(counts):8.1f} ms")
        print(f"issues list (all counts): {timed(listing, 3):7.1f} ms")
    finally:
        engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
