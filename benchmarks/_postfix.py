"""Postfix's ``smtp-sink`` for the send benchmarks: a loopback sink faster than any sender here
(aiosmtpd, the fallback when Postfix is not installed, tops out near 1,000 msg/s)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def sink() -> Iterator[str]:
    """``smtp-sink`` on a free loopback port (PIPELINING on), or aiosmtpd without Postfix."""
    if not Path(SINK).exists():
        from tests.support.smtpd import SMTPServer

        print("(smtp-sink not found: aiosmtpd instead; install postfix for real figures)")
        with SMTPServer() as server:
            yield f"127.0.0.1:{server.port}"
        return
    port = free_port()
    user = ["-u", "postfix"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([SINK, *user, "-m", "512", f"127.0.0.1:{port}", "1024"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def smtp_source(address: str, *, messages: int, size: int, connections: int) -> float | None:
    """Postfix's ``smtp-source`` pushing ``messages`` of ``size`` bytes into ``address`` over
    ``connections``: msg/s, or None without Postfix."""
    if not Path(SOURCE).exists():
        return None
    command = [SOURCE, "-d", "-s", str(connections), "-m", str(messages), "-l", str(size)]
    command += ["-f", "news@example.org", "-t", "r@example.org", address]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return messages / (time.perf_counter() - started)
