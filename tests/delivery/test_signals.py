"""Ctrl-C twice during a real `weekly-mailer send`: the second one cuts the wait for a stalled
server without a traceback, records what is known and leaves no row in ``sending``."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from tests.support.send import Workspace, recipients, wait_for
from tests.support.smtpd import Faults, SMTPServer


def test_a_second_ctrl_c_cuts_the_wait_and_leaves_nothing_sending(tmp_path: Path) -> None:
    stall, release = threading.Event(), threading.Event()

    def decide(rcpt: str) -> str | None:
        if stall.is_set():
            release.wait(20)  # the server hangs at DATA (blocking its loop) until released
        return None

    server = SMTPServer(Faults(custom=decide))
    with server:
        ws = Workspace(tmp_path, backend_url=server.url, concurrency=2, smtp_timeout=30)
        ws.add_subscribers(40)
        proc = ws.start("send", "--yes")
        try:
            assert wait_for(lambda: len(server.received()) >= 3, timeout=60)
            stall.set()
            time.sleep(0.5)  # messages are now in flight, waiting for the server's reply
            proc.send_signal(signal.SIGINT)
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            out, err = proc.communicate(timeout=10)
            took = time.monotonic() - started
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        got = recipients(server.received())
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr
    assert "Stopping now: messages in flight are handed back" in stderr
    assert "Stopped: " in out.decode()
    assert took < 10
    ledger = ws.ledger()
    assert "sending" not in ledger
    sent = {e for e, _, _ in ledger["sent"]}
    assert sent <= set(got)  # the ledger never claims more than the server has
    assert len(sent) + len(ledger.get("queued", [])) == 40
