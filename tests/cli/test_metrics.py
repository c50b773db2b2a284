"""The metrics listener of real ``send``, ``serve``, ``run`` and ``worker`` subprocesses, scraped
and parsed as Prometheus does; the counters are checked against the ledger's rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
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

from tests.support.delivery import make_issue
from tests.support.metrics import Samples, listening_ports, scrape, total, value
from tests.support.send import Workspace, wait_for
from tests.support.smtpd import Faults, SMTPServer, _Handler, free_port
from tests.support.web_server import Server, run_cli
from weekly_mailer.articles import load_article
from weekly_mailer.compose import compose_issue
from weekly_mailer.scheduler.timing import WeeklySchedule
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database

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


# -- several delivery processes -----------------------------------------------------------------


def _delivery_children(pid: int) -> list[int]:
    """The ``processes`` children of ``pid`` (multiprocessing's resource tracker aside)."""
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = []
    for child in map(int, found):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.append(child)
    return out


def _raw(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


def _parsed(page: str) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }


def _scrape_when(url: str, ready: Any, timeout: float = 60) -> Samples | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s = scrape(url, timeout=2)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
            continue
        if ready(s):
            return s
        time.sleep(0.02)
    return None


def _two_process_send(tmp_path: Path, server: SMTPServer, port: int, **extra: Any) -> Workspace:
    ws = Workspace(
        tmp_path,
        backend_url=server.url,
        concurrency=2,
        processes=2,
        batch_size=10,
        retry_initial_seconds=3600,  # deferred rows are due long after this send ends
        metrics_address=f"127.0.0.1:{port}",
        metrics_linger_seconds=30,
        **extra,
    )
    ws.add_subscribers(120)
    return ws


def test_send_with_two_processes_sums_their_counters_and_agrees_with_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tmp_path / "tmp"  # where the metrics directory is made (TMPDIR), to see it removed
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    refused = {f"reader{i:05d}@example.org" for i in (3, 17, 29, 41, 55, 90)}
    deferred = {"reader00008@example.org", "reader00033@example.org", "reader00101@example.org"}
    faults = Faults(
        refuse=refused,
        custom=lambda rcpt: "451 4.3.0 Try again later" if rcpt in deferred else None,
    )
    port = free_port()
    with SlowSMTPServer(faults) as server:
        ws = _two_process_send(tmp_path, server, port)
        url = f"http://127.0.0.1:{port}/metrics"
        proc = ws.start("send", "--yes")
        out = Lines(proc)
        try:
            during = _scrape_when(
                url,
                lambda s: (
                    value(s, MESSAGES, kind="issue", outcome="sent", bounce_class="none") > 0
                    and value(s, "weekly_mailer_outbox_depth", kind="issue", state="queued") > 0
                ),
            )
            assert during is not None, out.lines
            children = _delivery_children(proc.pid)

            def written() -> list[str]:
                return sorted(p.name for d in tmp.iterdir() for p in d.iterdir())

            # While the send runs, each delivery process writes its counters there as it
            # counts (the second may not have recorded anything at the first scrape).
            wait_for(lambda: {f"counter_{pid}.db" for pid in children} <= set(written()), 30)
            files = written()
            assert wait_for(lambda: out.has("for a last metrics scrape"), timeout=60), out.lines
            ledger = ledger_by_status(ws)  # the send is over: this is final
            page = _raw(url)  # the one last scrape: it ends the linger
            after = _parsed(page)
            proc.wait(timeout=10)  # the last scrape ends the linger at once
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
    assert proc.returncode == 0, out.lines
    assert len(children) == 2, children
    # While it ran, each delivery process wrote its counters into the directory.
    assert {f"counter_{pid}.db" for pid in children} <= set(files), files
    # The counters are every process's, summed: exactly the ledger.
    assert ledger == {"sent": 111, "failed": 6, "deferred": 3}
    assert value(after, MESSAGES, kind="issue", outcome="sent", bounce_class="none") == 111
    assert value(after, MESSAGES, kind="issue", outcome="failed", bounce_class="hard") == 6
    assert value(after, MESSAGES, kind="issue", outcome="deferred", bounce_class="soft") == 3
    assert total(after, MESSAGES) == 120
    replies = {
        code: value(after, "weekly_mailer_smtp_replies_total", code=code)
        for code in ("250", "550", "451")
    }
    assert replies == {"250": 111, "550": 6, "451": 3}
    assert len(server.received()) == 111
    # The database gauges come once, from the parent (no pid label, no second copy).
    up = [line for line in page.splitlines() if line.startswith("weekly_mailer_database_up")]
    assert up == ["weekly_mailer_database_up 1.0"], up
    assert value(after, "weekly_mailer_outbox_depth", kind="issue", state="deferred") == 3
    assert value(after, "weekly_mailer_list_health_issue_sent") == 111
    assert 'pid="' not in page
    # At exit the directory is gone.
    assert list(tmp.iterdir()) == []


def test_a_killed_delivery_process_keeps_its_counts_and_none_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    faults = Faults(refuse={f"reader{i:05d}@example.org" for i in (1, 2, 40, 41, 80, 81)})
    port = free_port()
    with SlowSMTPServer(faults) as server:
        ws = _two_process_send(tmp_path, server, port)
        url = f"http://127.0.0.1:{port}/metrics"
        proc = ws.start("send", "--yes")
        out = Lines(proc)
        try:
            during = _scrape_when(
                url,
                lambda s: (
                    value(s, MESSAGES, kind="issue", outcome="sent", bounce_class="none") >= 20
                ),
            )
            assert during is not None, out.lines
            children = _delivery_children(proc.pid)
            assert len(children) == 2, children
            os.kill(children[0], signal.SIGKILL)
            assert wait_for(lambda: out.has("for a last metrics scrape"), timeout=60), out.lines
            ledger = ledger_by_status(ws)  # both children have ended: this is final
            after = scrape(url)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
    assert proc.returncode == 1, out.lines
    assert any("delivery process" in line and "died (exit code -9)" in line for line in out.lines)
    # The killed one's counters were written as it counted (its file outlives it), and they
    # are summed once: the counters are the ledger. Its claimed rows wait for their lease.
    sent = value(after, MESSAGES, kind="issue", outcome="sent", bounce_class="none")
    failed = total(after, MESSAGES, outcome="failed")
    assert sent == ledger["sent"] >= 20
    assert failed == ledger["failed"]
    assert value(after, "weekly_mailer_smtp_replies_total", code="250") == sent
    assert ledger["sending"] + ledger["queued"] > 0
    assert list(tmp.iterdir()) == []


def test_worker_with_two_processes_serves_their_summed_counters_while_it_runs(
    tmp_path: Path,
) -> None:
    port = free_port()
    with SlowSMTPServer(Faults(refuse={"reader00007@example.org"})) as server:
        ws = _two_process_send(tmp_path, server, port)
        article = load_article(str(ws.root / "article.md"))
        week = dt.date(2026, 11, 23)
        with Database(ws.settings) as db, db.sessions.begin() as s:
            issue = make_issue(s, week)
            issue.skeleton = compose_issue(article, ws.settings, send_week=week).skeleton
            outbox.enqueue(s, issue, now=dt.datetime.now(dt.UTC))
        url = f"http://127.0.0.1:{port}/metrics"
        proc = ws.start("worker")
        out = Lines(proc)
        try:
            done = _scrape_when(url, lambda s: total(s, MESSAGES) >= 120)
            assert done is not None, out.lines
            children = _delivery_children(proc.pid)
            ledger = ledger_by_status(ws)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
    assert proc.returncode == 0, out.lines
    assert out.has("Worker started: 2 delivery processes"), out.lines
    assert len(children) == 2, children  # still running when scraped
    assert ledger == {"sent": 119, "failed": 1}
    assert value(done, MESSAGES, kind="issue", outcome="sent", bounce_class="none") == 119
    assert value(done, MESSAGES, kind="issue", outcome="failed", bounce_class="hard") == 1
    assert out.has("Worker stopped: 119 sent, 0 deferred, 1 failed, 0 skipped."), out.lines
