"""The metrics listener of real ``send``, ``serve``, ``run`` and ``worker`` subprocesses, scraped
and parsed as Prometheus does; the counters are checked against the ledger's rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.metrics import Samples, listening_ports, scrape, total, value
from tests.support.send import Workspace, wait_for
from tests.support.smtpd import Faults, SMTPServer, _Handler, free_port
from tests.support.web_server import Server, run_cli
from weekly_mailer.scheduler.timing import WeeklySchedule

pytestmark = pytest.mark.slow

MESSAGES = "weekly_mailer_messages_total"


class _SlowHandler(_Handler):
    """Accepts (or refuses) like the usual handler, a little slowly: a send lasts long enough
    to be scraped while it runs."""

    delay = 0.05

    async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(srv, session, envelope)


class SlowSMTPServer(SMTPServer):
    def _controller(self) -> Any:
        from aiosmtpd.controller import Controller

        return Controller(
            _SlowHandler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10
        )


class Lines:
    """A subprocess's stderr, read line by line in a thread."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(proc.stderr, True), daemon=True),
            threading.Thread(target=self._read, args=(proc.stdout, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any, keep: bool) -> None:
        for raw in stream:
            if keep:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def close(self) -> None:
        """After the process ended: the rest of its output, and the pipes closed."""
        for t in self._threads:
            t.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def ledger_by_status(ws: Workspace) -> Counter[str]:
    return Counter({status: len(rows) for status, rows in ws.ledger().items()})


def test_send_metrics_during_and_after_agree_with_the_ledger(tmp_path: Path) -> None:
    refused = {f"reader{i:05d}@example.org" for i in (3, 17, 29, 41, 55)}
    deferred = {"reader00008@example.org", "reader00033@example.org"}
    faults = Faults(
        refuse=refused,
        custom=lambda rcpt: "451 4.3.0 Try again later" if rcpt in deferred else None,
    )
    port = free_port()
    with SlowSMTPServer(faults) as server:
        ws = Workspace(
            tmp_path,
            backend_url=server.url,
            concurrency=2,
            batch_size=10,
            retry_initial_seconds=3600,  # deferred rows are due long after this send ends
            metrics_address=f"127.0.0.1:{port}",
            metrics_linger_seconds=30,
        )
        ws.add_subscribers(120)
        url = f"http://127.0.0.1:{port}/metrics"
        proc = ws.start("send", "--yes")
        out = Lines(proc)
        try:
            during: Samples | None = None
            deadline = time.monotonic() + 60
            while during is None and time.monotonic() < deadline:
                try:
                    s = scrape(url, timeout=2)
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.05)
                    continue
                sent = value(s, MESSAGES, kind="issue", outcome="sent", bounce_class="none")
                queued = value(s, "weekly_mailer_outbox_depth", kind="issue", state="queued")
                if sent > 0 and queued > 0:
                    during = s
                time.sleep(0.02)
            assert during is not None, out.lines
            assert wait_for(lambda: out.has("for a last metrics scrape"), timeout=60), out.lines
            ledger = ledger_by_status(ws)  # the send is over: this is final
            after = scrape(url)
            proc.wait(timeout=10)  # the last scrape ends the linger at once
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
    assert proc.returncode == 0, out.lines

    # During: some sent, not all; rows still open in the outbox.
    sent_during = value(during, MESSAGES, kind="issue", outcome="sent", bounce_class="none")
    assert 0 < sent_during < ledger["sent"]
    assert value(during, "weekly_mailer_outbox_depth", kind="issue", state="queued") > 0

    # After: the counters are the ledger.
    assert ledger == {"sent": 113, "failed": 5, "deferred": 2}
    assert value(after, MESSAGES, kind="issue", outcome="sent", bounce_class="none") == 113
    assert value(after, MESSAGES, kind="issue", outcome="failed", bounce_class="hard") == 5
    assert total(after, MESSAGES, outcome="failed") == ledger["failed"]
    assert total(after, MESSAGES, outcome="deferred") == ledger["deferred"]
    assert value(after, MESSAGES, kind="issue", outcome="deferred", bounce_class="soft") == 2
    assert total(after, MESSAGES, kind="confirmation") == 0
    replies = {
        code: value(after, "weekly_mailer_smtp_replies_total", code=code)
        for code in ("250", "550", "451")
    }
    assert replies == {"250": 113, "550": 5, "451": 2}
    assert len(server.received()) == 113
    # The database's gauges, read at scrape time.
    assert value(after, "weekly_mailer_database_up") == 1
    assert value(after, "weekly_mailer_outbox_depth", kind="issue", state="queued") == 0
    assert value(after, "weekly_mailer_outbox_depth", kind="issue", state="sending") == 0
    assert value(after, "weekly_mailer_outbox_depth", kind="issue", state="deferred") == 2
    assert value(after, "weekly_mailer_list_health_issue_sent") == 113
    # The 5 refusals at send time are hard bounces; the rate is the guard's (issues.health):
    # hard bounces per copy attempted, 5 of 113 delivered + 5 refused.
    assert value(after, "weekly_mailer_list_health_rate", rate="hard_bounce") == 5 / 118


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_serve_counts_web_requests_by_route_on_its_own_port(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "WEEKLY_MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'web.db'}",
        "WEEKLY_MAILER_SECRET_KEY": "metrics-test-secret",
        "WEEKLY_MAILER_BACKEND_URL": f"file://{tmp_path / 'outbox'}",
        "WEEKLY_MAILER_METRICS_ADDRESS": f"127.0.0.1:{port}",
    }
    assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
    with Server(tmp_path, env) as web:
        before = scrape(f"http://127.0.0.1:{port}/metrics")
        statuses = [
            _get(web.url + "/"),
            _get(web.url + "/"),
            _get(web.url + "/confirm/not-a-token-1"),
            _get(web.url + "/confirm/not-a-token-2"),
            _get(web.url + "/no/such/page"),
            _get(web.url + "/metrics"),  # not on the public port
        ]
        after = scrape(f"http://127.0.0.1:{port}/metrics")
        assert web.proc is not None
        assert listening_ports(web.proc.pid) == {web.port, port}
    assert statuses[:2] == [200, 200]
    assert statuses[4:] == [404, 404]

    def delta(route: str, status: int) -> float:
        labels = {"route": route, "method": "GET", "status": str(status)}
        name = "weekly_mailer_web_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("/", 200) == 2
    assert delta("/confirm/<token>", statuses[2]) == 2  # one series for every token
    assert delta("unmatched", 404) == 2
    assert value(after, "weekly_mailer_web_requests_total", route="/healthz", method="GET",
                 status="200") >= 1  # fmt: skip
    assert not any("not-a-token" in str(labels) for _, labels in after)


def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    env = {
        "WEEKLY_MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'web.db'}",
        "WEEKLY_MAILER_SECRET_KEY": "metrics-test-secret",
        "WEEKLY_MAILER_BACKEND_URL": f"file://{tmp_path / 'outbox'}",
    }
    assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
    with Server(tmp_path, env) as web:
        assert web.proc is not None
        assert listening_ports(web.proc.pid) == {web.port}
    assert "Metrics on" not in web.output()


def test_a_metrics_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ws = Workspace(tmp_path, backend_url="console://", metrics_address=f"127.0.0.1:{port}")
        result = ws.run("worker", "--once", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: metrics_address: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_run_exposes_the_scheduler_next_fire_time_and_leadership(tmp_path: Path) -> None:
    port = free_port()
    ws = Workspace(tmp_path, backend_url="console://", metrics_address=f"127.0.0.1:{port}")
    proc = ws.start("run", "--no-web")
    out = Lines(proc)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        samples: dict[Any, float] = {}

        def scraped() -> bool:
            nonlocal samples
            try:
                samples = scrape(url, timeout=2)
            except (urllib.error.URLError, ConnectionError):
                return False
            return value(samples, "weekly_mailer_scheduler_last_run_timestamp_seconds") > 0

        assert wait_for(scraped, timeout=30, step=0.1), out.lines
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        out.close()
    expected = WeeklySchedule.from_settings(ws.settings).next_after(dt.datetime.now(dt.UTC))
    assert value(samples, "weekly_mailer_scheduler_next_fire_timestamp_seconds") == (
        expected.timestamp()
    )
    assert value(samples, "weekly_mailer_scheduler_leader") == 1
    outcomes = {
        o: value(samples, "weekly_mailer_scheduler_last_outcome", outcome=o)
        for o in ("nothing", "catch_up", "missed", "standby", "error")
    }
    assert outcomes == {"nothing": 1, "catch_up": 0, "missed": 0, "standby": 0, "error": 0}
    assert proc.returncode == 0, out.lines
