"""Load benchmark for the web app: a bounded Python client on loopback against ``serve``.

Starts ``weekly-mailer serve`` (waitress) on a fresh SQLite database with N confirmed
subscribers, then drives three endpoints with C keep-alive connections, each bounded by a
request count and a time limit:

- ``GET /healthz``: the floor (routing, one ``SELECT 1``, headers), measured in the same run;
- ``GET /static/site.css``: a static file, for scale (no database, no template);
- ``GET /``: the sign-up page (template, CSRF token and cookie);
- ``POST /unsubscribe/<token>`` with ``List-Unsubscribe=One-Click`` (RFC 8058), cycling through
  the subscribers' tokens: the first pass unsubscribes, later passes are idempotent no-ops.

Prints requests/second and p50/p99 latency per endpoint, and each as a ratio to the floor.

    .venv/bin/python benchmarks/bench_web.py [--requests 3000] [--seconds 15] [--connections 8]
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from weekly_mailer.tokens import Purpose, TokenSigner

SECRET = "bench-secret-not-for-production"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(folder: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEEKLY_MAILER_")}
    env.update(
        {
            "WEEKLY_MAILER_DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
            "WEEKLY_MAILER_BACKEND_URL": "memory://",
            "WEEKLY_MAILER_SECRET_KEY": SECRET,
            "WEEKLY_MAILER_BASE_URL": f"http://127.0.0.1:{port}",
            "WEEKLY_MAILER_LOG_LEVEL": "WARNING",
        }
    )
    return env


def cli(env: dict[str, str], cwd: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "weekly_mailer", *args],
        env=env,
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=300,
    )


Request = Callable[[int], tuple[str, str, bytes, dict[str, str]]]


def drive(
    port: int, request: Request, *, total: int, seconds: float, connections: int
) -> tuple[int, float, list[float], int]:
    """Up to ``total`` requests in at most ``seconds``: (done, elapsed, latencies, errors)."""
    counter = iter(range(total))
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            method, path, body, headers = request(i)
            t0 = time.perf_counter()
            try:
                conn.request(method, path, body=body or None, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append(time.perf_counter() - t0)
            if not ok:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return len(latencies), elapsed, latencies, errors[0]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per endpoint (bound)")
    parser.add_argument("--seconds", type=float, default=15.0, help="per endpoint (bound)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads")
    parser.add_argument("--subscribers", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wm-bench-web-") as tmp:
        folder = Path(tmp)
        port = free_port()
        env = env_for(folder, port)
        cli(env, folder, "db", "upgrade")
        csv = folder / "people.csv"
        csv.write_text(
            "email,name\n"
            + "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(args.subscribers))
        )
        cli(env, folder, "subscribers", "import", "--confirmed", "--quiet", str(csv))
        with sqlite3.connect(folder / "bench.db") as db:
            rows = db.execute("SELECT id, email_key FROM subscriber ORDER BY id").fetchall()
        signer = TokenSigner(SECRET)
        paths = [f"/unsubscribe/{signer.make(Purpose.UNSUBSCRIBE, i, k)}" for i, k in rows]

        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "weekly_mailer",
                "serve",
                "--port",
                str(port),
                "--threads",
                str(args.threads),
            ],
            env=env,
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                        break
                except OSError:
                    time.sleep(0.1)
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            endpoints: dict[str, Request] = {
                "GET /healthz (floor)": lambda i: ("GET", "/healthz", b"", {}),
                "GET /static/site.css": lambda i: ("GET", "/static/site.css", b"", {}),
                "GET / (sign-up page)": lambda i: ("GET", "/", b"", {}),
                "POST one-click unsubscribe": lambda i: (
                    "POST",
                    paths[i % len(paths)],
                    b"List-Unsubscribe=One-Click",
                    form,
                ),
            }
            # Warm up each endpoint (imports, template compilation, connection pools).
            for request in endpoints.values():
                drive(port, request, total=50, seconds=5, connections=2)
            results = {}
            for name, request in endpoints.items():
                done, elapsed, lat, errors = drive(
                    port,
                    request,
                    total=args.requests,
                    seconds=args.seconds,
                    connections=args.connections,
                )
                results[name] = (
                    done / elapsed,
                    percentile(lat, 0.5),
                    percentile(lat, 0.99),
                    done,
                    errors,
                    statistics.fmean(lat),
                )
            with sqlite3.connect(folder / "bench.db") as db:
                left = db.execute(
                    "SELECT count(*) FROM subscriber WHERE status = 'unsubscribed'"
                ).fetchone()[0]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)

    floor_rps, _, floor_p99, *_ = results["GET /healthz (floor)"]
    print(
        f"weekly-mailer serve (waitress, {args.threads} threads), {args.connections} keep-alive "
        f"connections on loopback, {os.cpu_count()} CPUs shared by client and server; "
        f"bounds: {args.requests} requests or {args.seconds:.0f} s per endpoint"
    )
    print(
        f"{'endpoint':<30} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'req/s vs floor':>15} {'p99 vs floor':>13}"
    )
    for name, (rps, p50, p99, done, errors, _mean) in results.items():
        print(
            f"{name:<30} {done:>8} {errors:>6} {rps:>8.0f} {p50 * 1000:>7.2f} {p99 * 1000:>7.2f} "
            f"{rps / floor_rps:>14.2f}x {p99 / floor_p99:>12.2f}x"
        )
    print(f"subscribers unsubscribed by the one-click run: {left} of {len(paths)}")


if __name__ == "__main__":
    main()
