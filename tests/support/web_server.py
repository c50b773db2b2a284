"""A real ``weekly-mailer serve`` subprocess on loopback, for end-to-end web tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from tests.support.smtpd import free_port


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
