"""Delivery under bad servers: outages that end, refused senders, policy refusals, throttling,
busy greetings, bad DKIM keys, stale sends. Real aiosmtpd servers (tests/smtpd.py), real SQL."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.support.delivery import SimpleRenderers, add_subscribers, make_issue, worker_for
from tests.support.smtpd import Faults, SMTPServer
from tests.support.smtpd import _Handler as _BaseHandler
from weekly_mailer.config import Settings
from weekly_mailer.delivery import resolve_backend
from weekly_mailer.delivery.backends.base import (
    BackendBusyError,
    BackendUnavailableError,
    Envelope,
    SendHaltedError,
)
from weekly_mailer.delivery.dkim import DkimSigner
from weekly_mailer.delivery.pipeline import WINDOW, chunk_size, first_chunk_size
from weekly_mailer.delivery.worker import Worker
from weekly_mailer.errors import ConfigError
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery, Issue, Subscriber
from weekly_mailer.store.outbox import ClaimedRow


def statuses(db: Database, issue_id: int) -> dict[str, int]:
    with db.sessions.begin() as s:
        return {k: v for k, v in outbox.counts(s, issue_id).items() if v}


def setup_issue(db: Database, n: int, *, now: dt.datetime | None = None) -> tuple[int, list[str]]:
    with db.sessions.begin() as s:
        emails = add_subscribers(s, n)
        issue = make_issue(s)
        outbox.enqueue(s, issue, now=now or dt.datetime.now(dt.UTC))
        return issue.id, emails


def bounce_state(db: Database) -> tuple[set[str], int]:
    """(bounced addresses, total bounce_count) as the subscriber table has them."""
    with db.sessions.begin() as s:
        bounced = set(s.scalars(select(Subscriber.email).where(Subscriber.status == "bounced")))
        total = sum(s.scalars(select(Subscriber.bounce_count)))
        return bounced, total


def in_flight(worker: Worker) -> int:
    """The most messages the default (pipelined) engine has on the wire at once."""
    return WINDOW * chunk_size(worker.settings) - 1


# -- 1. an outage that ends ------------------------------------------------------------------


def test_the_same_worker_sends_again_once_the_outage_is_over(
    database: Database, settings: Settings
) -> None:
    issue_id, emails = setup_issue(database, 8)
    server = SMTPServer()  # not started yet
    with socket.socket() as held:  # its port bound but not listening: connections refused
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", server.port))
        worker = worker_for(database, settings, server)
        with pytest.raises(BackendUnavailableError, match="cannot open an SMTP connection"):
            worker.run()
    assert statuses(database, issue_id) == {"queued": 8}
    with server:
        stats = worker.run()
        got = sorted(m.rcpt_tos[0] for m in server.received())
    assert got == sorted(emails) and stats.sent == 8
    assert statuses(database, issue_id) == {"sent": 8}


# -- 2. refusals that are not about one recipient --------------------------------------------


class _RefuseSender(_BaseHandler):
    async def handle_MAIL(self, *args: Any) -> str:
        return "553 5.7.1 Sender address not allowed"


def test_a_refused_sender_stops_the_send_and_bounces_nobody(
    database: Database, settings: Settings
) -> None:
    issue_id, _ = setup_issue(database, 12)
    with SMTPServer() as server:
        server.controller.handler = _RefuseSender(server)
        worker = worker_for(database, settings, server, bounce_limit=1)
        with pytest.raises(BackendUnavailableError) as exc:
            worker.run()
    assert str(exc.value) == (
        f"the SMTP server 127.0.0.1:{server.port} refused the sender news@example.org: "
        "553 5.7.1 Sender address not allowed"
    )
    assert statuses(database, issue_id) == {"queued": 12}
    assert bounce_state(database) == (set(), 0)


def test_a_policy_refusal_at_data_for_everyone_trips_the_breaker_without_bounces(
    database: Database, settings: Settings
) -> None:
    issue_id, _ = setup_issue(database, 60)
    faults = Faults(custom=lambda rcpt: "554 5.7.1 Message refused by policy")
    with SMTPServer(faults) as server:
        worker = worker_for(database, settings, server, bounce_limit=1, concurrency=2)
        with pytest.raises(SendHaltedError, match=r"20 recipients in a row .*554 5\.7\.1"):
            worker.run()
    counts = statuses(database, issue_id)
    # The breaker's 20, and what was already on the wire: the rest of its chunk and the next.
    assert 20 <= counts["failed"] <= 20 + in_flight(worker)
    assert counts["failed"] + counts["queued"] == 60
    assert bounce_state(database) == (set(), 0)  # a policy refusal is not a hard bounce
    with database.sessions.begin() as s:
        errors = set(s.scalars(select(Delivery.last_error).where(Delivery.status == "failed")))
    assert errors == {"554 5.7.1 Message refused by policy"}


def test_a_mailbox_refusal_for_everyone_trips_the_breaker_and_bounces_nobody(
    database: Database, settings: Settings
) -> None:
    issue_id, emails = setup_issue(database, 60)
    with SMTPServer(Faults(refuse=set(emails))) as server:
        worker = worker_for(database, settings, server, bounce_limit=1, concurrency=2)
        with pytest.raises(SendHaltedError, match=r"20 recipients in a row .*550 5\.1\.1"):
            worker.run()
    counts = statuses(database, issue_id)
    assert 20 <= counts["failed"] <= 20 + in_flight(worker)
    assert counts["failed"] + counts["queued"] == 60
    assert bounce_state(database) == (set(), 0)  # the failures stay, held against nobody


def test_a_short_streak_of_mailbox_refusals_still_bounces_each(
    database: Database, settings: Settings
) -> None:
    issue_id, emails = setup_issue(database, 30)
    refused = set(emails[5:15])  # ten in a row, then deliveries: real unknown mailboxes
    with SMTPServer(Faults(refuse=refused)) as server:
        worker_for(database, settings, server, bounce_limit=1, concurrency=1).run()
    assert statuses(database, issue_id) == {"sent": 20, "failed": 10}
    assert bounce_state(database) == (refused, 10)


def test_a_streak_at_the_end_of_the_run_still_bounces_each(
    database: Database, settings: Settings
) -> None:
    issue_id, emails = setup_issue(database, 12)
    refused = set(emails[-4:])
    with SMTPServer(Faults(refuse=refused)) as server:
        worker_for(database, settings, server, bounce_limit=1, concurrency=1).run()
    assert statuses(database, issue_id) == {"sent": 8, "failed": 4}
    assert bounce_state(database) == (refused, 4)


def test_a_mailbox_refusal_at_rcpt_is_still_a_hard_bounce(
    database: Database, settings: Settings
) -> None:
    issue_id, emails = setup_issue(database, 5)
    with SMTPServer(Faults(refuse={emails[2]})) as server:
        worker_for(database, settings, server, bounce_limit=1).run()
    assert statuses(database, issue_id) == {"sent": 4, "failed": 1}
    assert bounce_state(database) == ({emails[2]}, 1)


# -- 3. stale sends ----------------------------------------------------------------------------


def test_rows_older_than_the_give_up_age_fail_as_stale_and_retry_sends_them(
    database: Database, settings: Settings
) -> None:
    days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=5)
    issue_id, emails = setup_issue(database, 6, now=days_ago)
    with database.sessions.begin() as s:  # two were deferred days ago, one only just now
        ids = list(s.scalars(select(Delivery.id).order_by(Delivery.id)))
        s.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids[:2]))
            .values(status="deferred", attempts=1, first_failure_at=days_ago)
        )
        s.execute(
            update(Delivery)
            .where(Delivery.id == ids[2])
            .values(
                status="deferred",
                attempts=1,
                first_failure_at=dt.datetime.now(dt.UTC),
                next_attempt_at=dt.datetime.now(dt.UTC),
            )
        )
    with SMTPServer() as server:
        stats = worker_for(database, settings, server).run()
        assert [m.rcpt_tos[0] for m in server.received()] == [emails[2]]
        assert stats.stale == 5
        with database.sessions.begin() as s:
            errors = set(s.scalars(select(Delivery.last_error).where(Delivery.status == "failed")))
        assert len(errors) == 1 and errors.pop().startswith("stale: not sent within")
        assert statuses(database, issue_id) == {"sent": 1, "failed": 5}
        # `issues retry` is the explicit override: the retried rows are not stale at once.
        with database.sessions.begin() as s:
            issue = s.get(Issue, issue_id)
            assert issue is not None
            assert outbox.retry(s, issue, now=dt.datetime.now(dt.UTC)) == 5
        worker_for(database, settings, server).run()
        assert sorted(m.rcpt_tos[0] for m in server.received()) == sorted(emails)
    assert statuses(database, issue_id) == {"sent": 6}


# -- 4. throttling in proportion -------------------------------------------------------------


def test_greylisting_slows_the_send_down_instead_of_stopping_it(
    database: Database, settings: Settings
) -> None:
    issue_id, emails = setup_issue(database, 50)
    greylisted = set(emails[::5])  # 20%
    faults = Faults(custom=lambda r: "451 4.3.0 Greylisted, try later" if r in greylisted else None)
    with SMTPServer(faults) as server:
        # The default throttle_pause_seconds (30 s): a full pause per 451 would take minutes.
        worker = worker_for(database, settings, server, concurrency=2)
        assert worker.settings.throttle_pause_seconds == 30
        started = time.monotonic()
        stats = worker.run(max_wait=0)
        elapsed = time.monotonic() - started
        assert len(server.received()) == 40
    assert statuses(database, issue_id) == {"sent": 40, "deferred": 10}
    assert stats.throttled == 0 and stats.slowed >= 1
    assert elapsed < 29, elapsed  # one 30 s pause would pass it; load on 2 cores must not


def test_a_4_7_x_throttling_reply_still_pauses_the_whole_send(
    database: Database, settings: Settings
) -> None:
    # More rows than one window of first chunks holds, so some are still to start at the 4.7.1.
    n = 2 * WINDOW * first_chunk_size(settings.replace(concurrency=1))
    issue_id, emails = setup_issue(database, n)
    faults = Faults(custom=lambda r: "451 4.7.1 Rate limited" if r == emails[0] else None)
    with SMTPServer(faults) as server:
        worker = worker_for(database, settings, server, concurrency=1, throttle_pause_seconds=0.3)
        started = time.monotonic()
        stats = worker.run(max_wait=0)
        assert time.monotonic() - started >= 0.3
    # The row throttled waits out each pause and is tried again (it is throttled every time).
    assert stats.throttled >= 1
    assert statuses(database, issue_id) == {"sent": n - 1, "deferred": 1}
    with database.sessions.begin() as s:  # a reply about our pace counts nothing against it
        row = s.scalars(select(Delivery).where(Delivery.status == "deferred")).one()
        assert (row.attempts, row.first_failure_at, row.last_code) == (0, None, 451)


# -- 5. a busy greeting ------------------------------------------------------------------------


class BusyFront:
    """A TCP front for an SMTP server: the first ``busy`` connections get a 421 greeting."""

    def __init__(self, target_port: int, busy: int) -> None:
        self.target_port = target_port
        self.busy = busy
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.busy:
                client.sendall(b"421 4.7.0 Too many connections, try again later\r\n")
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            src.close()  # each socket is the source of one pipe: that pipe closes it

    def close(self) -> None:
        self.sock.close()


def test_a_busy_greeting_is_a_throttle_not_an_outage(
    database: Database, settings: Settings
) -> None:
    issue_id, emails = setup_issue(database, 10)
    with SMTPServer() as server:
        front = BusyFront(server.port, busy=2)
        try:
            s = settings.replace(
                backend_url=f"smtp://127.0.0.1:{front.port}",
                concurrency=2,
                throttle_pause_seconds=0.2,
            )
            backend = resolve_backend(s)
            with backend:
                with pytest.raises(BackendBusyError, match="is busy: 421 4.7.0 Too many"):
                    backend.send(Envelope("news@example.org", "x@example.org", b"Subject: x\r\n"))
                stats = Worker(database.sessions, s, backend, SimpleRenderers()).run()
        finally:
            front.close()
        got = sorted(m.rcpt_tos[0] for m in server.received())
    assert got == sorted(emails)  # each once; nothing was deferred or failed
    assert statuses(database, issue_id) == {"sent": 10}
    assert stats.throttled >= 1


# -- 9. a DKIM setup that cannot sign --------------------------------------------------------


class SigningRenderers(SimpleRenderers):
    def __init__(self, signer: DkimSigner) -> None:
        super().__init__()
        self.signer = signer

    def for_issue(self, issue_id: int):  # type: ignore[no-untyped-def]
        plain = super().for_issue(issue_id)

        def render(row: ClaimedRow) -> Envelope:
            env = plain(row)
            return Envelope(env.sender, env.recipient, self.signer.sign(env.data), env.message_id)

        return render


def test_a_dkim_key_that_cannot_sign_stops_the_send_with_one_line(
    database: Database, settings: Settings
) -> None:
    issue_id, _ = setup_issue(database, 5)
    bad = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    signer = DkimSigner(domain="example.org", selector="s1", private_key=bad)
    with SMTPServer() as server:
        s = settings.replace(backend_url=server.url)
        worker = Worker(database.sessions, s, resolve_backend(s), SigningRenderers(signer))
        with pytest.raises(ConfigError, match="DKIM signing failed") as exc:
            worker.run()
        assert server.received() == []
    assert "\n" not in str(exc.value)
    assert statuses(database, issue_id) == {"queued": 5}  # nothing failed quietly


def test_slowdown_halves_the_rate_and_climbs_back_over_the_pause() -> None:
    from weekly_mailer.delivery.ratelimit import SlowDown

    now = [0.0]
    slow = SlowDown(30, send_rate=0, clock=lambda: now[0])
    for _ in range(11):  # 10 messages a second before any throttling reply
        assert slow.reserve() == 0.0
        now[0] += 0.1
    assert slow.cap() == 0.0  # not slowed
    slow.note()
    assert slow.cap() == pytest.approx(5.0, rel=0.05)  # half the measured 10/s
    slow.note()  # another reply restarts the climb; it does not halve again
    assert slow.cap() == pytest.approx(5.0, rel=0.05) and slow.slowdowns == 1
    now[0] += 15
    assert slow.cap() == pytest.approx(7.5, rel=0.05)
    now[0] += 15
    assert slow.cap() == 0.0  # full speed again


def test_send_says_in_one_line_that_the_sender_was_refused(tmp_path: Path) -> None:
    from tests.support.send import Workspace

    with SMTPServer() as server:
        server.controller.handler = _RefuseSender(server)
        ws = Workspace(tmp_path, backend_url=server.url, bounce_limit=1)
        ws.add_subscribers(5)
        out = ws.run("send", "--yes")
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    # The relay check before anything is stored (the pre-flight) says it, in one line.
    assert errors == [
        f"Error: relay 127.0.0.1:{server.port} refuses our envelope sender news@example.org "
        "(553 5.7.1 Sender address not allowed): let the relay's account send as it, or change "
        "bounce_address; nothing was stored"
    ]
    assert "Traceback" not in out.stderr
    assert ws.ledger() == {}  # no issue, no row
