"""Delivery at the machine's limit: our `send` against a floor, all to Postfix's `smtp-sink`.

One run starts `smtp-sink` on a free loopback port and measures, each as msg/s and as a ratio of
the floor:

floor:        a minimal pipelined client (the pipelined engine's core: pre-built bytes of the seed
              article's personalised size, no database, no composing) over --connections
smtp-source:  Postfix's own load generator, same size and connections (a second opinion)
send:         `weekly-mailer send --yes` as a user runs it (a subprocess; SQLite; the seed
              article; the default engine and `processes`, one per core), per subscriber count,
              DKIM off and on (RSA-2048), with its peak RSS: the largest total resident memory
              of `send` and its delivery processes, sampled every 20 ms from /proc (a
              process's ru_maxrss would include this script's own memory at the fork)

    .venv/bin/python benchmarks/bench_send.py [--subscribers 10000,30000,100000] [--quick]
        [--connections 8] [--floor-messages 20000] [--engine pipelined|smtplib]
        [--processes N] [--no-dkim | --dkim-only] [--send-src OTHER_CHECKOUT/src]

Needs /usr/sbin/smtp-sink and smtp-source (Debian: `apt-get install postfix`); without them it
says so and measures with aiosmtpd instead (much slower: the ratios are not comparable).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seeds" / "000_495e8089be07fca3.txt"
# In a clone without ../shared: the project's own test article (shorter: figures differ).
ARTICLE = SEED if SEED.exists() else ROOT / "tests" / "data" / "article.md"
sys.path.insert(0, str(ROOT))

import tomli_w  # noqa: E402
from benchmarks._postfix import sink, smtp_source  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from weekly_mailer import subscribers as subs  # noqa: E402
from weekly_mailer.config import load_settings  # noqa: E402
from weekly_mailer.delivery.backends.base import Envelope, SendResult  # noqa: E402
from weekly_mailer.delivery.backends.pipelined import PipelinedSMTPBackend  # noqa: E402
from weekly_mailer.delivery.backends.smtp_url import parse_smtp_url  # noqa: E402
from weekly_mailer.store.db import Database, make_engine, upgrade  # noqa: E402


def message_size() -> int:
    """The seed article's personalised message size (what one subscriber gets)."""
    import datetime as dt

    from weekly_mailer.articles import load_article
    from weekly_mailer.compose import Recipient, compose_issue, make_message_id, personalise
    from weekly_mailer.config import Settings

    week = dt.date(2026, 11, 25)
    settings = Settings(secret_key="bench", postal_address="1 Example Street")
    issue = compose_issue(load_article(str(ARTICLE)), settings, send_week=week, issue_id=1)
    who = Recipient(1, "reader00001@example.org", "Reader 1", "https://x.example/u/1")
    now = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    message_id = make_message_id(settings, week, 1)
    return len(personalise(issue.skeleton, who, message_id=message_id, date=now))


def floor(address: str, n: int, size: int, connections: int) -> float:
    """The pipelined engine alone: pre-built messages, one batch over ``connections``."""
    head = b"From: news@example.org\r\nTo: r@example.org\r\nSubject: floor\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    data = head + line * max(1, (size - len(head)) // len(line))
    envelopes = [Envelope("news@example.org", f"r{i}@example.org", data) for i in range(n)]
    target = parse_smtp_url(f"smtp://{address}")
    with PipelinedSMTPBackend(target, concurrency=connections, max_per_connection=10**9) as b:
        b.send_batch(envelopes[:connections])  # connect first: the floor is the sending
        started = time.perf_counter()
        results = b.send_batch(envelopes)
        elapsed = time.perf_counter() - started
    assert all(isinstance(r, SendResult) for r in results), results[:3]
    return n / elapsed


def workspace(
    root: Path,
    address: str,
    n: int,
    *,
    dkim: bool,
    engine: str,
    connections: int,
    processes: int = 0,
) -> Path:
    """A folder with weekly_mailer.toml, a migrated SQLite database and ``n`` subscribers."""
    query = "?engine=smtplib" if engine == "smtplib" else ""
    values: dict[str, object] = {
        "database_url": f"sqlite:///{root / 'mail.db'}",
        "backend_url": f"smtp://{address}{query}",
        "secret_key": "bench-secret",
        "from_address": "Bench <news@example.org>",
        "base_url": "https://news.example.org",
        "postal_address": "1 Example Street, Springfield",
        "article_source": str(ARTICLE),
        "concurrency": connections,
        "max_per_connection": 1000,
        "log_level": "WARNING",
    }
    if processes:
        values["processes"] = processes
    if dkim:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (root / "dkim.pem").write_bytes(pem)
        values |= {"dkim_domain": "example.org", "dkim_selector": "bench",
                   "dkim_key_file": str(root / "dkim.pem")}  # fmt: skip
    config = root / "weekly_mailer.toml"
    config.write_text(tomli_w.dumps(values))
    settings = load_settings(config, environ={})
    engine_ = make_engine(settings.database_url)
    upgrade(engine_)
    engine_.dispose()
    csv = "email,name\n" + "".join(f"reader{i:06d}@example.org,Reader {i}\n" for i in range(n))
    with Database(settings) as db, db.sessions.begin() as session:
        report = subs.import_file(session, csv.encode(), filename="bench.csv", confirmed=True)
        assert not report.errors, report.errors[:3]
    return config


def tree_rss(pid: int) -> int:
    """Resident memory (KiB) of ``pid`` and every process below it, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
    return total


def send(config: Path, send_src: str = "") -> tuple[float, float, str]:
    """Run `send --yes` (from ``send_src``, another checkout's src/, when given); ``(seconds,
    peak RSS of its process tree in MiB, last output line)``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEEKLY_MAILER_")}
    if send_src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [send_src, env.get("PYTHONPATH")]))
    env["WEEKLY_MAILER_CONFIG"] = str(config)
    out = config.parent / "send.out"
    peak = 0
    with out.open("wb") as sink_file:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "weekly_mailer", "send", "--yes"],
            cwd=config.parent,
            env=env,
            stdout=sink_file,
            stderr=subprocess.STDOUT,
        )
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    text = out.read_text(errors="replace").strip()
    if proc.returncode != 0:
        raise SystemExit(f"send failed ({proc.returncode}):\n{text[-2000:]}")
    return elapsed, peak / 1024, text.splitlines()[-1] if text else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--subscribers", default="10000,30000,100000", help="comma-separated counts"
    )
    parser.add_argument("--quick", action="store_true", help="2,000 subscribers, a short floor")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--floor-messages", type=int, default=20000)
    parser.add_argument("--engine", choices=("pipelined", "smtplib"), default="pipelined")
    parser.add_argument(
        "--processes", type=int, default=0, help="delivery processes (default: one per core)"
    )
    parser.add_argument("--no-dkim", action="store_true", help="skip the DKIM-on runs")
    parser.add_argument("--dkim-only", action="store_true", help="skip the DKIM-off runs")
    parser.add_argument(
        "--send-src", default="", help="run `send` from this src/ folder (a before/after check)"
    )
    args = parser.parse_args()
    counts = [int(c) for c in re.split(r"[,\s]+", args.subscribers.strip()) if c]
    if args.quick:
        counts = [min(2000, c) for c in counts[:1]]
        args.floor_messages = min(args.floor_messages, 2000)
    if not SEED.exists():
        print(f"(the seed article {SEED} is missing: tests/data/article.md instead; sizes differ)")
    size = message_size()
    from weekly_mailer.config import cores

    processes = args.processes or cores()
    print(
        f"message: {size} bytes ({ARTICLE.name}, personalised); {args.connections} connections; "
        f"send: {args.engine} engine, {processes} delivery processes"
    )
    with sink() as address:
        base = floor(address, args.floor_messages, size, args.connections)
        print(f"floor (pipelined client):      {base:9,.0f} msg/s = 1.000 x floor")
        source = smtp_source(
            address, messages=args.floor_messages, size=size, connections=args.connections
        )
        if source is not None:
            print(
                f"smtp-source:                   {source:9,.0f} msg/s = {source / base:.3f} x floor"
            )
        for n in counts:
            modes = [
                m for m in (False, True) if not (m and args.no_dkim or not m and args.dkim_only)
            ]
            for dkim in modes:
                with tempfile.TemporaryDirectory() as tmp:
                    config = workspace(Path(tmp), address, n, dkim=dkim, engine=args.engine,
                                       connections=args.connections,
                                       processes=args.processes)  # fmt: skip
                    seconds, rss, last = send(config, args.send_src)
                rate = n / seconds
                label = f"send {n:>7,} {'DKIM RSA-2048' if dkim else 'no DKIM':13}"
                print(
                    f"{label}: {rate:9,.0f} msg/s = {rate / base:.3f} x floor, "
                    f"{seconds:7.1f} s, peak RSS {rss:6.0f} MiB  ({last})"
                )


if __name__ == "__main__":
    main()
