"""The outbox state machine and the worker loop, against the in-memory backend and real SQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pytest
from sqlalchemy import select

from tests.support.delivery import SimpleRenderers, add_subscribers, make_issue
from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends.base import BackendUnavailableError, Envelope, SendResult
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.delivery.worker import Worker, backoff
from weekly_mailer.errors import PermanentFailure, TemporaryFailure
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery, Issue, Subscriber

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)


def statuses(db: Database, issue_id: int) -> dict[str, int]:
    with db.sessions.begin() as s:
        return {k: v for k, v in outbox.counts(s, issue_id).items() if v}


def setup_issue(db: Database, n: int) -> tuple[int, list[str]]:
    with db.sessions.begin() as s:
        emails = add_subscribers(s, n)
        subs.add(s, "pending@example.org")
        issue = make_issue(s)
        assert outbox.enqueue(s, issue, now=NOW) == n
        return issue.id, emails


def test_enqueue_is_one_row_per_active_subscriber_and_idempotent(database: Database) -> None:
    issue_id, _ = setup_issue(database, 30)
    with database.sessions.begin() as s:
        issue = s.get(Issue, issue_id)
        assert issue is not None and issue.status == "sending"
        assert outbox.enqueue(s, issue, now=NOW) == 0
    assert statuses(database, issue_id) == {"queued": 30}


def test_worker_sends_each_once_and_finishes_the_issue(
    database: Database, settings: Settings
) -> None:
    issue_id, emails = setup_issue(database, 40)
    backend = MemoryBackend()
    stats = Worker(database.sessions, settings, backend, SimpleRenderers()).run()
    assert sorted(e.recipient for e in backend.sent) == sorted(emails)
    assert stats.sent == 40
    assert statuses(database, issue_id) == {"sent": 40}
    with database.sessions.begin() as s:
        issue = s.get(Issue, issue_id)
        assert issue is not None and issue.status == "sent" and issue.finished_at is not None
    # Nothing is left: a second run sends nothing.
    Worker(database.sessions, settings, backend, SimpleRenderers()).run()
    assert len(backend.sent) == 40


def test_unsubscribed_after_enqueue_is_skipped(database: Database, settings: Settings) -> None:
    issue_id, emails = setup_issue(database, 5)
    with database.sessions.begin() as s:
        sub = subs.get_by_email(s, emails[2])
        assert sub is not None
        subs.unsubscribe(s, sub, source="test")
    backend = MemoryBackend()
    stats = Worker(database.sessions, settings, backend, SimpleRenderers()).run()
    assert emails[2] not in {e.recipient for e in backend.sent}
    assert stats.skipped == 1
    assert statuses(database, issue_id) == {"sent": 4, "skipped": 1}


def test_temporary_failures_back_off_then_give_up(database: Database, settings: Settings) -> None:
    settings = settings.replace(
        retry_initial_seconds=10, retry_max_seconds=25, retry_give_up_hours=0.02
    )
    assert [backoff(settings, a) for a in (1, 2, 3, 4)] == [10, 20, 25, 25]
    issue_id, emails = setup_issue(database, 1)
    clock = [NOW]

    def refuse(env: Envelope) -> SendResult:
        raise TemporaryFailure("451 4.3.0 Try again later", code=451)

    backend = MemoryBackend(refuse)
    worker = Worker(database.sessions, settings, backend, SimpleRenderers(), clock=lambda: clock[0])
    worker.run(max_wait=0)
    with database.sessions.begin() as s:
        row = s.scalars(select(Delivery)).one()
        assert (row.status, row.attempts, row.last_code) == ("deferred", 1, 451)
        assert row.next_attempt_at == NOW + dt.timedelta(seconds=10)
        assert row.first_failure_at == NOW
    clock[0] = NOW + dt.timedelta(seconds=10)
    worker.run(max_wait=0)
    with database.sessions.begin() as s:
        row = s.scalars(select(Delivery)).one()
        assert row.attempts == 2
        assert row.next_attempt_at == clock[0] + dt.timedelta(seconds=20)
    clock[0] = NOW + dt.timedelta(hours=0.03)  # past the give-up age
    worker.run(max_wait=0)
    with database.sessions.begin() as s:
        row = s.scalars(select(Delivery)).one()
        # Past the give-up age a deferred row fails as stale at claim time: not tried again.
        assert row.status == "failed" and row.last_error.startswith("stale: ")
        assert row.attempts == 2
        assert s.get(Issue, issue_id).status == "sent"  # type: ignore[union-attr]
    assert backend.attempts == 2
    assert worker.stats.stale == 1


def test_permanent_failure_fails_at_once_and_counts_a_bounce(
    database: Database, settings: Settings
) -> None:
    settings = settings.replace(bounce_limit=1)
    issue_id, emails = setup_issue(database, 6)
    bad = {emails[1], emails[4]}

    def handler(env: Envelope) -> SendResult | None:
        if env.recipient in bad:
            raise PermanentFailure("550 5.1.1 No such user here", code=550)
        return None

    backend = MemoryBackend(handler)
    Worker(database.sessions, settings, backend, SimpleRenderers()).run()
    assert backend.attempts == 6
    assert statuses(database, issue_id) == {"sent": 4, "failed": 2}
    with database.sessions.begin() as s:
        bounced = s.scalars(select(Subscriber.email).where(Subscriber.status == "bounced"))
        assert set(bounced) == bad
        failed = s.scalars(select(Delivery).where(Delivery.status == "failed")).all()
        assert {f.last_error for f in failed} == {"550 5.1.1 No such user here"}


def test_an_expired_lease_makes_rows_claimable_again(database: Database) -> None:
    issue_id, _ = setup_issue(database, 3)
    with database.sessions.begin() as s:
        rows, _ = outbox.claim(s, owner="a", now=NOW, lease_seconds=60, limit=10)
        assert len(rows) == 3
    with database.sessions.begin() as s:
        rows, _ = outbox.claim(s, owner="b", now=NOW, lease_seconds=60, limit=10)
        assert rows == []
        later = NOW + dt.timedelta(seconds=61)
        assert outbox.next_due(s, issue_id=issue_id) == NOW + dt.timedelta(seconds=60)
        rows, _ = outbox.claim(s, owner="b", now=later, lease_seconds=60, limit=10)
        assert len(rows) == 3
        lease = s.scalars(select(Delivery.lease_owner).distinct()).all()
        assert lease == ["b"]


def test_stop_finishes_in_flight_and_hands_the_rest_back(
    database: Database, settings: Settings
) -> None:
    issue_id, _ = setup_issue(database, 50)
    stop = threading.Event()
    settings = settings.replace(concurrency=3)

    def handler(env: Envelope) -> SendResult | None:
        if len(backend.sent) >= 9:
            stop.set()
        return None

    backend = MemoryBackend(handler)
    stats = Worker(database.sessions, settings, backend, SimpleRenderers(), stop=stop).run()
    after_stop = statuses(database, issue_id)
    assert "sending" not in after_stop
    assert after_stop["sent"] == len(backend.sent) == stats.sent
    assert after_stop["sent"] + after_stop["queued"] == 50
    # The next run picks up where it stopped.
    Worker(database.sessions, settings, backend, SimpleRenderers()).run()
    assert statuses(database, issue_id) == {"sent": 50}
    assert len({e.recipient for e in backend.sent}) == len(backend.sent) == 50


def test_backend_outage_hands_rows_back_untried(database: Database, settings: Settings) -> None:
    issue_id, _ = setup_issue(database, 10)

    def down(env: Envelope) -> SendResult:
        raise BackendUnavailableError("cannot open an SMTP connection to x:25: refused")

    worker = Worker(database.sessions, settings, MemoryBackend(down), SimpleRenderers())
    with pytest.raises(BackendUnavailableError):
        worker.run()
    assert statuses(database, issue_id) == {"queued": 10}
    with database.sessions.begin() as s:
        assert set(s.scalars(select(Delivery.attempts))) == {0}


def test_retry_requeues_failed_and_deferred(database: Database, settings: Settings) -> None:
    issue_id, emails = setup_issue(database, 4)

    def handler(env: Envelope) -> SendResult | None:
        if env.recipient == emails[0]:
            raise PermanentFailure("550 no", code=550)
        if env.recipient == emails[1]:
            raise TemporaryFailure("451 later", code=451)
        return None

    Worker(database.sessions, settings, MemoryBackend(handler), SimpleRenderers()).run(max_wait=0)
    assert statuses(database, issue_id) == {"sent": 2, "failed": 1, "deferred": 1}
    with database.sessions.begin() as s:
        issue = s.get(Issue, issue_id)
        assert issue is not None
        # A 5xx refusal stays failed unless asked for: only the deferred row is queued.
        assert outbox.retry(s, issue, now=NOW) == 1
    backend = MemoryBackend()
    Worker(database.sessions, settings, backend, SimpleRenderers()).run()
    assert [e.recipient for e in backend.sent] == [emails[1]]
    assert statuses(database, issue_id) == {"sent": 3, "failed": 1}
    with database.sessions.begin() as s:
        issue = s.get(Issue, issue_id)
        assert issue is not None
        assert outbox.retry(s, issue, now=NOW, include_refused=True) == 1
    Worker(database.sessions, settings, backend, SimpleRenderers()).run()
    assert sorted(e.recipient for e in backend.sent) == sorted(emails[:2])
    assert statuses(database, issue_id) == {"sent": 4}


@pytest.mark.postgres
def test_postgres_workers_claim_disjoint_batches(pg_url: str, settings: Settings) -> None:
    from weekly_mailer.store.db import make_engine, upgrade

    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    settings = settings.replace(database_url=pg_url, batch_size=7, concurrency=2)
    with Database(settings) as db:
        issue_id, emails = setup_issue(db, 300)
        with db.sessions.begin() as s1, db.sessions.begin() as s2:
            a, _ = outbox.claim(s1, owner="a", now=NOW, lease_seconds=60, limit=50)
            b, _ = outbox.claim(s2, owner="b", now=NOW, lease_seconds=60, limit=50)
            assert len(a) == len(b) == 50
            assert not {r.delivery_id for r in a} & {r.delivery_id for r in b}
            s1.rollback()
            s2.rollback()
        backend = MemoryBackend()
        workers = [
            Worker(db.sessions, settings, backend, SimpleRenderers(), issue_id=issue_id)
            for _ in range(3)
        ]
        threads = [threading.Thread(target=w.run) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counted = Counter(e.recipient for e in backend.sent)
        assert set(counted) == set(emails) and max(counted.values()) == 1
        assert statuses(db, issue_id) == {"sent": 300}
        # Each worker's own count adds up (one may start late and find nothing left).
        assert sum(w.stats.sent for w in workers) == 300


def test_a_throttling_reply_pauses_the_whole_send(database: Database, settings: Settings) -> None:
    import time

    settings = settings.replace(concurrency=3, throttle_pause_seconds=0.3)
    issue_id, emails = setup_issue(database, 12)
    times: list[float] = []
    throttled_at: list[float] = []

    def handler(env: Envelope) -> SendResult | None:
        if env.recipient == emails[0]:
            throttled_at.append(time.monotonic())
            raise TemporaryFailure("421 4.7.0 Slow down", code=421, throttle=True)
        times.append(time.monotonic())
        return None

    worker = Worker(database.sessions, settings, MemoryBackend(handler), SimpleRenderers())
    worker.run(max_wait=0)
    assert worker.stats.throttled >= 1  # the row is tried again after each pause
    # Nothing else started within the pause that followed the 421 (bar the 2 already going).
    t421 = throttled_at[0]
    assert sum(1 for t in times if t421 <= t < t421 + 0.29) <= 2
    assert statuses(database, issue_id) == {"sent": 11, "deferred": 1}


def test_send_rate_is_a_ceiling_across_connections(database: Database, settings: Settings) -> None:
    import time

    settings = settings.replace(concurrency=4, send_rate=40.0)
    setup_issue(database, 24)
    started = time.monotonic()
    stats = Worker(database.sessions, settings, MemoryBackend(), SimpleRenderers()).run()
    elapsed = time.monotonic() - started
    assert stats.sent == 24
    assert elapsed >= (24 - 4) / 40.0  # a burst of `concurrency`, then 40/s


def test_a_buggy_backend_defers_the_row_and_keeps_what_was_sent(
    database: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    issue_id, emails = setup_issue(database, 6)

    def handler(env: Envelope) -> SendResult | None:
        if env.recipient == emails[3]:
            raise KeyError("oops")
        return None

    backend = MemoryBackend(handler)
    Worker(database.sessions, settings, backend, SimpleRenderers()).run(max_wait=0)
    assert statuses(database, issue_id) == {"sent": 5, "deferred": 1}
    with database.sessions.begin() as s:
        row = s.scalars(select(Delivery).where(Delivery.status == "deferred")).one()
        assert row.last_error == "backend error: KeyError: 'oops'"
    assert "unexpected error" in caplog.text
