"""Delivery throughput, as ratios against a floor measured in the same run.

floor:   personalise the composed skeleton for N recipients in a plain loop (no database, no I/O)
memory:  the whole worker (claim, personalise, record in batches) on SQLite, in-memory backend
smtp:    the same to a real aiosmtpd server on loopback, `concurrency` pooled connections

    .venv/bin/python benchmarks/bench_send.py [--n 3000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.send import ARTICLE  # noqa: E402
from tests.support.smtpd import SMTPServer  # noqa: E402

from weekly_mailer import issues  # noqa: E402
from weekly_mailer import subscribers as subs  # noqa: E402
from weekly_mailer.articles import load_article  # noqa: E402
from weekly_mailer.clock import utcnow  # noqa: E402
from weekly_mailer.compose import Recipient, make_message_id, personalise  # noqa: E402
from weekly_mailer.config import Settings  # noqa: E402
from weekly_mailer.delivery import resolve_backend  # noqa: E402
from weekly_mailer.delivery.render import IssueRenderers  # noqa: E402
from weekly_mailer.delivery.worker import Worker  # noqa: E402
from weekly_mailer.store.db import Database, make_engine, upgrade  # noqa: E402

WEEK = dt.date(2026, 11, 25)


def prepare(folder: Path, n: int, backend_url: str, concurrency: int) -> tuple[Settings, int]:
    settings = Settings(
        database_url=f"sqlite:///{folder / 'bench.db'}",
        backend_url=backend_url,
        secret_key="bench",
        from_address="Bench <news@example.org>",
        postal_address="1 Example Street",
        concurrency=concurrency,
        log_level="WARNING",
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    (folder / "a.md").write_text(ARTICLE)
    article = load_article(str(folder / "a.md"))
    csv = "email,name\n" + "".join(f"r{i}@example.org,Reader {i}\n" for i in range(n))
    with Database(settings) as db, db.sessions.begin() as s:
        subs.import_file(s, csv.encode(), filename="bench.csv", confirmed=True)
        composed = issues.compose(article, settings, send_week=WEEK)
        issue = issues.store_issue(s, article, composed, send_week=WEEK, now=utcnow())
        issues.enqueue(s, issue, now=utcnow())
        return settings, issue.id


def floor(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings, issue_id = prepare(Path(tmp), 1, "memory://", 1)
        with Database(settings) as db, db.sessions.begin() as s:
            skeleton = issues.get_issue(s, issue_id).skeleton
    assert skeleton is not None
    now = utcnow().replace(microsecond=0)
    started = time.perf_counter()
    for i in range(n):
        r = Recipient(i, f"r{i}@example.org", f"Reader {i}", f"https://x.example/u/{i}")
        personalise(skeleton, r, message_id=make_message_id(settings, WEEK, i), date=now)
    return n / (time.perf_counter() - started)


def worker_rate(n: int, backend_url: str, concurrency: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings, issue_id = prepare(Path(tmp), n, backend_url, concurrency)
        with Database(settings) as db, resolve_backend(settings) as backend:
            w = Worker(db.sessions, settings, backend, IssueRenderers(db.sessions, settings))
            started = time.perf_counter()
            stats = w.run()
            elapsed = time.perf_counter() - started
        assert stats.sent == n, stats
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    base = floor(args.n)
    print(f"floor (personalise only): {base:10,.0f} msg/s = 1.0000 x floor")
    mem = worker_rate(args.n, "memory://", args.concurrency)
    print(f"worker -> memory:         {mem:10,.0f} msg/s = {mem / base:.4f} x floor")
    with SMTPServer() as server:
        smtp = worker_rate(args.n, server.url, args.concurrency)
    print(f"worker -> aiosmtpd:       {smtp:10,.0f} msg/s = {smtp / base:.4f} x floor")


if __name__ == "__main__":
    main()
