"""A handful of slow clients must not lock everyone else out of a real ``serve`` subprocess.

Slow-loris clients open connections and dribble one header line every few seconds, so they are
never idle long enough for waitress's channel timeout. With waitress's default connection limit
(100), 105 of them filled the server and every normal request timed out.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.web_server import Server, run_cli, serve_env

pytestmark = pytest.mark.slow

SLOW_CLIENTS = 150


def test_slow_clients_do_not_starve_normal_requests(tmp_path: Path) -> None:
    env = serve_env(tmp_path)
    assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
    with Server(tmp_path, env) as server:
        slow: list[socket.socket] = []
        try:
            for _ in range(SLOW_CLIENTS):
                s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                slow.append(s)
            # Each slow client sends one more header line: alive, never finishing its request.
            for s in slow:
                s.sendall(b"X-Dribble: 1\r\n")
            time.sleep(0.5)
            answered = 0
            for path in ("/healthz", "/", "/archive"):
                started = time.monotonic()
                with urllib.request.urlopen(server.url + path, timeout=10) as response:
                    assert response.status == 200
                    answered += 1
                assert time.monotonic() - started < 10
            assert answered == 3
            for s in slow:  # still connected: the server kept them, and served us too
                s.sendall(b"X-Dribble: 2\r\n")
        finally:
            for s in slow:
                s.close()
