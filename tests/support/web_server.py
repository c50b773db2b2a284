"""A real ``weekly-mailer serve`` subprocess on loopback, for end-to-end web tests."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from tests.support.smtpd import free_port

SERVE_SECRET = "serve-test-secret"
CSRF_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')

# The article the browser tests send (test_browser, test_accessibility) and open in the archive.
ARTICLE = """---
title: Lanterns Along the Canal
date: 2026-11-18
author: Mira Okafor
summary: How one small town lit its towpath with lanterns its volunteers built by hand.
---

When the council switched off the towpath lights to save money, the walkers did not stop
coming. They came with torches, then with jam jars and candles, and by spring the
volunteers of the canal society were building lanterns in a borrowed workshop.

Each lantern is made from reclaimed tin and a small solar cell. Forty of them now hang
between the lock and the old mill, and the society keeps a rota for cleaning them.

"It was never about the light," says one of the builders. "It was about walking home
together."
"""


def serve_env(tmp_path: Path, backend_url: str = "memory://", **settings: str) -> dict[str, str]:
    """Settings for a ``serve`` subprocess on the SQLite file ``tmp_path / "serve.db"``; each
    keyword is one more setting (``lease_seconds="2"`` is ``WEEKLY_MAILER_LEASE_SECONDS=2``)."""
    env = {
        "WEEKLY_MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "WEEKLY_MAILER_BACKEND_URL": backend_url,
        "WEEKLY_MAILER_SECRET_KEY": SERVE_SECRET,
        "WEEKLY_MAILER_LIST_NAME": "Serve Test",
    }
    env.update({f"WEEKLY_MAILER_{key.upper()}": value for key, value in settings.items()})
    return env


def sign_up_over_http(
    url: str, email: str, name: str = "", *, headers: dict[str, str] | None = None, **fields: str
) -> tuple[int, bytes]:
    """One sign-up as a browser sends it (GET / for the cookie and the CSRF token, then POST
    /subscribe); the answer's status and page. ``fields`` are more form fields."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(url + "/", timeout=10) as r:
        token = CSRF_TOKEN.search(r.read().decode())
    assert token is not None
    form = {"csrf_token": token.group(1), "email": email, "name": name, **fields}
    request = urllib.request.Request(
        url + "/subscribe", data=urllib.parse.urlencode(form).encode(), headers=headers or {}
    )
    try:
        with opener.open(request, timeout=10) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), bytes(exc.read())


def cli_env(env: dict[str, str]) -> dict[str, str]:
    """The process environment without stray WEEKLY_MAILER_* settings, plus ``env``."""
    full = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WEEKLY_MAILER_") or k.startswith("WEEKLY_MAILER_TEST_")
    }
    full.update(env)
    return full


class Server:
    """``python -m weekly_mailer serve`` with settings from the environment; a context manager."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.cwd = cwd
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = cli_env({"WEEKLY_MAILER_BASE_URL": self.url, **env})
        self.log = cwd / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    def start(self, timeout: float = 20) -> Server:
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "weekly_mailer", "serve", "--port", str(self.port), *self.args],
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"serve did not answer /healthz in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "weekly_mailer", *args],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
