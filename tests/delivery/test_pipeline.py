"""The worker on its default path (``smtp://`` without ``?engine``: the pipelined engine in
overlapping chunks, ``delivery/pipeline.py``) against real aiosmtpd servers, and ``send`` with
two delivery processes on SQLite and PostgreSQL: each recipient exactly once."""

from __future__ import annotations

import datetime as dt
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.delivery.test_dkim import _ED, _RSA, pem, tamper_unsubscribe, verify_all
from tests.support.delivery import SimpleRenderers, add_subscribers, make_issue
from tests.support.send import Workspace, message_id, recipients, wait_for
from tests.support.smtpd import Faults, SMTPServer
from tests.support.smtpd_pipelining import PipeliningServer
from weekly_mailer.articles import load_article
from weekly_mailer.compose import compose_issue
from weekly_mailer.config import Settings
from weekly_mailer.delivery import resolve_backend
from weekly_mailer.delivery.backends.pipelined import PipelinedSMTPBackend
from weekly_mailer.delivery.render import IssueRenderers
from weekly_mailer.delivery.worker import Worker
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database, make_engine, upgrade
from weekly_mailer.store.models import Delivery, Subscriber

WEEK = dt.date(2026, 11, 25)


def setup_issue(db: Database, n: int, *, skeleton: bytes | None = None) -> tuple[int, list[str]]:
    with db.sessions.begin() as s:
        emails = add_subscribers(s, n)
        issue = make_issue(s, WEEK)
        issue.skeleton = skeleton
        outbox.enqueue(s, issue, now=dt.datetime.now(dt.UTC))
        return issue.id, emails


def run_worker(db: Database, settings: Settings, url: str, renderers: Any = None) -> Worker:
    settings = settings.replace(backend_url=url, smtp_timeout=5)
    backend = resolve_backend(settings)
    assert isinstance(backend, PipelinedSMTPBackend)  # the default engine, no ?engine=
    with backend:
        worker = Worker(db.sessions, settings, backend, renderers or SimpleRenderers())
        worker.run(max_wait=0)
    return worker


def ledger(db: Database) -> dict[str, tuple[str, int | None, int]]:
    """email -> (status, last_code, attempts)."""
    with db.sessions.begin() as s:
        rows = s.execute(
            select(Subscriber.email, Delivery.status, Delivery.last_code, Delivery.attempts).join(
                Subscriber, Subscriber.id == Delivery.subscriber_id
            )
        ).all()
    return {e: (st, code, n) for e, st, code, n in rows}


def test_the_worker_goes_lock_step_with_a_server_without_pipelining(
    database: Database, settings: Settings
) -> None:
    _, emails = setup_issue(database, 6)
    with PipeliningServer(pipelining=False) as server:
        worker = run_worker(database, settings.replace(concurrency=1), server.url)
        reads = server.command_reads()
    assert worker.stats.sent == 6
    assert {e: v[0] for e, v in ledger(database).items()} == dict.fromkeys(emails, "sent")
    assert len(reads) == 18 and all(r.count(b"\r\n") == 1 for r in reads), reads
    assert sorted(m.rcpt_tos[0] for m in server.received()) == sorted(emails)


def test_a_refused_rcpt_in_a_pipelined_chunk_fails_that_message_alone(
    database: Database, settings: Settings
) -> None:
    _, emails = setup_issue(database, 8)
    refused = emails[3]
    with PipeliningServer(Faults(refuse={refused}), pipelining=True) as server:
        worker = run_worker(database, settings.replace(concurrency=1), server.url)
        reads = server.command_reads()
        connections = server.connections()
    assert all(
        b"MAIL FROM" in r and b"RCPT TO" in r and b"DATA" in r for r in reads if b"MAIL" in r
    )
    assert any(r.startswith(b"RSET") for r in reads)
    assert connections == 1  # the connection went on after the refusal
    got = ledger(database)
    assert got.pop(refused) == ("failed", 550, 1)
    assert set(got.values()) == {("sent", 250, 1)}
    assert sorted(m.rcpt_tos[0] for m in server.received()) == sorted(got)
    assert worker.stats.sent == 7 and worker.stats.failed == 1
    with database.sessions.begin() as s:  # a mailbox refusal is a hard bounce (counts_as_bounce)
        assert s.scalar(select(Subscriber.bounce_count).where(Subscriber.email == refused)) == 1


def test_a_slow_reply_to_the_final_dot_within_the_timeout_is_not_a_failure(
    database: Database, settings: Settings
) -> None:
    _, emails = setup_issue(database, 3)
    with PipeliningServer(slow_data=1.0) as server:
        s = settings.replace(concurrency=2, smtp_data_timeout=5)
        worker = run_worker(database, s, server.url)
    assert worker.stats.sent == 3 and worker.stats.deferred == 0
    assert {v[0] for v in ledger(database).values()} == {"sent"}
    assert len(server.received()) == 3


@pytest.mark.parametrize("kind", ["rsa", "ed25519", "dual"])
def test_dkim_of_both_key_types_through_the_worker_verifies_and_breaks_on_list_unsubscribe(
    database: Database, settings: Settings, seed_path: Path, tmp_path: Path, kind: str
) -> None:
    keys: dict[str, Any] = {"dkim_domain": "example.org"}
    if kind in ("rsa", "dual"):
        (tmp_path / "rsa.pem").write_bytes(pem(_RSA))
        keys |= {"dkim_selector": "wm-rsa", "dkim_key_file": str(tmp_path / "rsa.pem")}
    if kind in ("ed25519", "dual"):
        (tmp_path / "ed.pem").write_bytes(pem(_ED))
        keys |= {
            "dkim_ed25519_selector": "wm-ed",
            "dkim_ed25519_key_file": str(tmp_path / "ed.pem"),
        }
    settings = settings.replace(concurrency=2, **keys)
    skeleton = compose_issue(load_article(str(seed_path)), settings, send_week=WEEK).skeleton
    setup_issue(database, 5, skeleton=skeleton)
    with SMTPServer() as server:
        renderers = IssueRenderers(database.sessions, settings)
        worker = run_worker(database, settings, server.url, renderers)
        got = server.received()
    assert worker.stats.sent == 5 and len(got) == 5
    signatures = {"rsa": 1, "ed25519": 1, "dual": 2}[kind]
    for m in got:
        head = m.data.split(b"\r\n\r\n")[0]
        assert len(re.findall(rb"^DKIM-Signature:", head, re.M)) == signatures
        assert verify_all(m.data) == [True] * signatures
        assert verify_all(tamper_unsubscribe(m.data)) == [False] * signatures


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_send_with_two_processes_delivers_each_recipient_exactly_once(
    tmp_path: Path, request: pytest.FixtureRequest, engine: str
) -> None:
    extra: dict[str, Any] = {}
    if engine == "postgres":
        pg_url = request.getfixturevalue("pg_url")
        e = make_engine(pg_url)
        upgrade(e)
        e.dispose()
        extra["database_url"] = pg_url
    with SMTPServer() as server:
        ws = Workspace(
            tmp_path, backend_url=server.url, processes=2, concurrency=4, batch_size=20, **extra
        )
        emails = ws.add_subscribers(600)
        result = ws.run("send", "--yes")
        messages = server.received()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Sending with 2 delivery processes." in result.stdout
    # The summary adds up both processes' figures.
    assert "This run: 600 sent, 0 deferred, 0 failed" in result.stdout, result.stdout
    assert recipients(messages) == Counter({e: 1 for e in emails})
    assert len({message_id(m.data) for m in messages}) == 600
    with Database(ws.settings) as db, db.sessions.begin() as s:
        assert outbox.counts(s, 1)["sent"] == 600
        owners = set(s.scalars(select(Delivery.lease_owner)))
    assert owners == {None}  # nothing left leased


@pytest.mark.slow
def test_worker_with_two_processes_adds_them_up_and_stops_on_sigterm(tmp_path: Path) -> None:
    with SMTPServer() as server:
        ws = Workspace(tmp_path, backend_url=server.url, processes=2, concurrency=2)
        emails = ws.add_subscribers(300)
        article = load_article(str(ws.root / "article.md"))
        with Database(ws.settings) as db, db.sessions.begin() as s:
            issue = make_issue(s, WEEK)
            issue.skeleton = compose_issue(article, ws.settings, send_week=WEEK).skeleton
            outbox.enqueue(s, issue, now=dt.datetime.now(dt.UTC))
        proc = ws.start("worker")
        try:
            assert wait_for(lambda: len(server.received()) >= 300, timeout=60)
            time.sleep(0.5)  # the last results are written
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        messages = server.received()
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "Worker started: 2 delivery processes" in stderr
    assert "Worker stopped: 300 sent, 0 deferred, 0 failed, 0 skipped." in stderr
    assert recipients(messages) == Counter({e: 1 for e in emails})
    assert set(ws.ledger()) == {"sent"}
