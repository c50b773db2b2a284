"""Recovery in seconds: four real ``weekly-mailer worker`` processes on PostgreSQL send one issue
to a real SMTP server (aiosmtpd, a little slow, and very slow now and then); one is SIGKILLed
mid-send. The others take its rows back within one lease (3 s here), and keep their own rows,
renewed by their heartbeats, through replies slower than the lease.

Writes its figures to tests/artifacts/recovery.json and prints them (``pytest -s``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support.send import Workspace, recipients, save_artifact, wait_for
from tests.support.smtpd_slow import SlowSMTPServer
from weekly_mailer import issues
from weekly_mailer.clock import utcnow
from weekly_mailer.config import FIELDS
from weekly_mailer.store.db import Database, make_engine
from weekly_mailer.store.models import Delivery, Subscriber

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

READERS = 600
WORKERS = 4
LEASE = 3.0  # seconds: the heartbeat renews every second
DELAY = 0.03  # seconds the server takes to accept each message
STALL = 1.5 * LEASE  # ... and three of them (100, 300, 500) longer than a whole lease


# Each `worker` one delivery process, where the version has a `processes` key: one lease owner
# per process, and the SIGKILL reaches everything that process holds.
ONE_PROCESS = {"processes": 1} if "processes" in FIELDS else {}


def delay(rcpt: str) -> float:
    number = int(rcpt.split("@")[0].removeprefix("reader"))
    return STALL if number % 200 == 100 else DELAY


def enqueue(ws: Workspace) -> int:
    """Compose and enqueue the week's issue, as `send` does, without delivering it."""
    with Database(ws.settings) as db:
        with db.sessions.begin() as session:
            look = issues.look_at_week(session, ws.settings, now=utcnow())
        plan = issues.plan_week(look, ws.settings)
        with db.sessions.begin() as session:
            prepared = issues.prepare_week(session, plan, now=utcnow())
            assert prepared.queued == READERS
            return int(prepared.issue.id)


def start_worker(ws: Workspace, n: int) -> tuple[subprocess.Popen[bytes], Path]:
    log = ws.root / f"worker{n}.err"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "weekly_mailer", "worker"],
            cwd=ws.root,
            env=ws.env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    return proc, log


def owner_of(log: Path) -> str:
    """The lease owner a worker announces on its first line: ``Worker OWNER started.``"""
    assert wait_for(lambda: "started." in log.read_text(), timeout=30, step=0.05), log.read_text()
    line = log.read_text().splitlines()[0]
    assert line.startswith("Worker ") and line.endswith(" started."), line
    return line.removeprefix("Worker ").removesuffix(" started.")


def test_a_sigkilled_worker_is_replaced_within_one_lease_and_doubles_only_its_own_rows(
    tmp_path: Path, pg_url: str
) -> None:
    with SlowSMTPServer(delay) as server:
        ws = Workspace(
            tmp_path,
            backend_url=server.url,
            database_url=pg_url,
            concurrency=2,
            batch_size=20,
            lease_seconds=LEASE,
            smtp_timeout=30,
            **ONE_PROCESS,
        )
        engine = make_engine(pg_url)

        def held(owner: str) -> dict[int, str]:
            with engine.connect() as conn:
                found = conn.execute(
                    select(Delivery.id, Subscriber.email)
                    .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                    .where(Delivery.lease_owner == owner, Delivery.status == "sending")
                ).all()
            return {i: e for i, e in found}

        def holders() -> dict[str, int]:
            with engine.connect() as conn:
                found = conn.execute(
                    select(Delivery.lease_owner, func.count())
                    .where(Delivery.status == "sending")
                    .group_by(Delivery.lease_owner)
                ).all()
            return {o: n for o, n in found}

        def statuses() -> Counter[str]:
            with engine.connect() as conn:
                return Counter(conn.scalars(select(Delivery.status)))

        emails = ws.add_subscribers(READERS)
        enqueue(ws)
        started = time.monotonic()
        workers = [start_worker(ws, n) for n in range(WORKERS)]
        try:
            owners = [owner_of(log) for _, log in workers]
            assert wait_for(lambda: len(server.received()) >= 2 * READERS // 3, timeout=90)
            # The victim: a worker in the middle of a batch (5 rows or more claimed, unrecorded).
            chosen: list[int] = []

            def busy() -> bool:
                counts = holders()
                chosen[:] = [i for i, o in enumerate(owners) if counts.get(o, 0) >= 5][:1]
                return bool(chosen)

            assert wait_for(busy, timeout=20, step=0.005), holders()
            victim, victim_owner = workers[chosen[0]][0], owners[chosen[0]]
            victim.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            victim.wait(10)
            at_kill = held(
                victim_owner
            )  # what it held when it died: the only rows that may go twice
            received_at_kill = len(server.received())
            done = wait_for(
                lambda: statuses() == Counter({"sent": READERS}), timeout=LEASE + 60, step=0.1
            )
            finished_at = time.monotonic()
        finally:
            for proc, _ in workers:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc, _ in workers:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            engine.dispose()
        messages = server.received()
        arrivals = list(server.arrivals)
    logs = [log.read_text() for _, log in workers]
    per_rcpt = recipients(messages)
    doubled = {e: n - 1 for e, n in per_rcpt.items() if n > 1}
    mine = set(at_kill.values())
    last_of_mine = max(t for m, t in zip(messages, arrivals, strict=True) if m.rcpt_tos[0] in mine)
    figures = {
        "readers": READERS,
        "workers": WORKERS,
        "lease_seconds": LEASE,
        "received_at_kill": received_at_kill,
        "victim_held_at_kill": len(at_kill),
        "duplicates": sum(doubled.values()),
        "seconds_kill_to_last_message": round(arrivals[-1] - killed_at, 2),
        "seconds_kill_to_last_of_victims_rows": round(last_of_mine - killed_at, 2),
        "seconds_total": round(finished_at - started, 1),
        "victim": chosen[0],
        "exit_codes": [proc.returncode for proc, _ in workers],
    }
    save_artifact("recovery.json", figures)
    assert done, statuses()
    assert received_at_kill < READERS  # the kill hit a live send
    assert at_kill, "the victim held no rows when it was killed"  # (it held 5 just before)
    assert set(per_rcpt) == set(emails)  # every subscriber got the issue
    assert set(doubled) <= mine  # only the dead worker's rows went twice ...
    assert sum(doubled.values()) <= len(at_kill)  # ... each at most once more
    assert arrivals[-1] - killed_at <= LEASE + 10  # the last message within lease + 10 s
    assert last_of_mine - killed_at <= LEASE + 10
    codes = [proc.returncode for proc, _ in workers]
    assert codes.pop(chosen[0]) == -signal.SIGKILL and codes == [0] * (WORKERS - 1)
    assert not any("Traceback" in text for text in logs), logs
    survivors = [text for i, text in enumerate(logs) if i != chosen[0]]
    assert all("Worker stopped:" in text for text in survivors), logs
