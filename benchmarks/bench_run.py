"""The daemon against `send`: `weekly-mailer run` and `weekly-mailer send` side by side, both to
the same Postfix `smtp-sink`, both with the same delivery processes and connections.

One run starts `smtp-sink` on a free loopback port and measures, each as msg/s and as a ratio of
the floor (and `run` as a ratio of `send`):

floor:  a minimal pipelined client (pre-built bytes of the seed article's personalised size, no
        database, no composing) over --connections, as in bench_send.py
send:   `weekly-mailer send --yes` (a subprocess; SQLite; the seed article; DKIM off), from its
        start until it exits (composing and enqueueing included)
run:    `weekly-mailer run --no-web` (a subprocess, the same settings): the week's issue is
        composed and enqueued first, as the weekly job does, then the daemon is started and
        timed from its start until the outbox holds no open row for the issue (its delivery
        runner picks the issue up by itself); then it is stopped with SIGTERM

    .venv/bin/python benchmarks/bench_run.py [--subscribers 30000] [--connections 8]
        [--processes N] [--floor-messages 20000] [--rounds 1]

The issue's done-when: `run` delivers at least 0.9 of `send`'s rate. Needs /usr/sbin/smtp-sink
(Debian: `apt-get install postfix`); without it aiosmtpd is used and the ratios mean less.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._postfix import sink  # noqa: E402
from benchmarks.bench_send import floor, message_size, send, workspace  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from weekly_mailer import issues  # noqa: E402
from weekly_mailer.clock import utcnow  # noqa: E402
from weekly_mailer.config import load_settings  # noqa: E402
from weekly_mailer.store.db import Database  # noqa: E402
from weekly_mailer.store.models import Delivery  # noqa: E402
from weekly_mailer.store.outbox import OPEN_STATES  # noqa: E402


def enqueue_week(config: Path) -> tuple[int, int]:
    """Compose and enqueue this week's issue as the weekly job does: ``(issue id, rows)``."""
    settings = load_settings(config, environ={})
    now = utcnow()
    with Database(settings) as db:
        with db.sessions() as session:
            look = issues.look_at_week(session, settings, now=now)
        plan = issues.plan_week(look, settings)
        with db.sessions.begin() as session:
            prepared = issues.prepare_week(session, plan, now=now)
            return int(prepared.issue.id), int(prepared.queued or 0)


def open_rows(db: Database, issue_id: int) -> int:
    with db.sessions() as session:
        query = select(func.count()).where(
            Delivery.issue_id == issue_id,
            Delivery.status.in_([s.value for s in OPEN_STATES]),
        )
        return int(session.scalar(query) or 0)


def run_daemon(config: Path, issue_id: int, *, timeout: float = 900.0) -> float:
    """Start `run --no-web`; seconds from its start until the issue has no open row."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEEKLY_MAILER_")}
    env["WEEKLY_MAILER_CONFIG"] = str(config)
    out = config.parent / "run.out"
    settings = load_settings(config, environ={})
    with Database(settings) as db, out.open("wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "weekly_mailer", "run", "--no-web"],
            cwd=config.parent,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            while True:
                if proc.poll() is not None:
                    text = out.read_text(errors="replace")
                    raise SystemExit(f"run ended early ({proc.returncode}):\n{text[-2000:]}")
                if open_rows(db, issue_id) == 0:
                    elapsed = time.perf_counter() - started
                    break
                if time.perf_counter() - started > timeout:
                    raise SystemExit(f"run did not deliver within {timeout:.0f} s")
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=30000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--floor-messages", type=int, default=20000)
    parser.add_argument(
        "--processes", type=int, default=0, help="delivery processes (default: one per core)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="send and run this many times each")
    args = parser.parse_args()
    from weekly_mailer.config import cores

    n = args.subscribers
    processes = args.processes or cores()
    size = message_size()
    print(
        f"message: {size} bytes, personalised; {n:,} readers; {args.connections} connections; "
        f"{processes} delivery processes; SQLite; DKIM off"
    )
    with sink() as address:
        base = floor(address, args.floor_messages, size, args.connections)
        print(f"floor (pipelined client): {base:9,.0f} msg/s = 1.000 x floor")
        send_rates: list[float] = []
        run_rates: list[float] = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                config = workspace(Path(tmp), address, n, dkim=False, engine="pipelined",
                                   connections=args.connections,
                                   processes=args.processes)  # fmt: skip
                seconds, rss, _last = send(config)
            send_rates.append(n / seconds)
            print(f"send {n:>7,}: {n / seconds:9,.0f} msg/s = {n / seconds / base:.3f} x floor, "
                  f"{seconds:6.1f} s, peak RSS {rss:5.0f} MiB")  # fmt: skip
            with tempfile.TemporaryDirectory() as tmp:
                config = workspace(Path(tmp), address, n, dkim=False, engine="pipelined",
                                   connections=args.connections,
                                   processes=args.processes)  # fmt: skip
                issue_id, queued = enqueue_week(config)
                assert queued == n, (queued, n)
                seconds = run_daemon(config, issue_id)
            run_rates.append(n / seconds)
            print(f"run  {n:>7,}: {n / seconds:9,.0f} msg/s = {n / seconds / base:.3f} x floor, "
                  f"{seconds:6.1f} s")  # fmt: skip
        best_send, best_run = max(send_rates), max(run_rates)
        verdict = "ok" if best_run >= 0.9 * best_send else "BELOW 0.9"
        print(f"run / send (best of {args.rounds}): {best_run / best_send:.3f} ({verdict})")


if __name__ == "__main__":
    main()
