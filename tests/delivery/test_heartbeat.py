"""The heartbeat: a live worker's leases stay ahead of the clock however long a send takes, and
nothing is renewed once it is closed. Real SQLite files and the real PostgreSQL server; a real
SMTP server (aiosmtpd) that stalls."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from tests.support.delivery import SimpleRenderers, add_subscribers, make_issue
from tests.support.send import recipients, wait_for
from tests.support.smtpd_slow import SlowSMTPServer
from weekly_mailer.config import Settings
from weekly_mailer.delivery import resolve_backend
from weekly_mailer.delivery.heartbeat import Heartbeat
from weekly_mailer.delivery.leases import Leases
from weekly_mailer.delivery.results import ResultEffects
from weekly_mailer.delivery.worker import Worker
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database, make_engine, make_sessionmaker, upgrade
from weekly_mailer.store.models import Delivery
from weekly_mailer.store.outbox.port import SqlOutbox

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

LEASE = 0.6  # seconds; the heartbeat beats every 0.2 s


def utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Database]:
    if request.param == "postgres":
        settings = settings.replace(database_url=request.getfixturevalue("pg_url"))
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    with Database(settings.replace(lease_seconds=LEASE)) as database:
        yield database


def heartbeat(sessions: sessionmaker[Session], settings: Settings, owner: str) -> Heartbeat:
    """A heartbeat of ``owner``'s leases on the outbox of ``sessions``."""
    port = SqlOutbox(
        sessions, owner=owner, lease_seconds=LEASE, effects=ResultEffects(settings)
    )
    return Heartbeat(port, Leases(LEASE), clock=utc)


def queue(db: Database, n: int) -> list[str]:
    with db.sessions.begin() as s:
        emails = add_subscribers(s, n)
        outbox.enqueue(s, make_issue(s), now=utc() - dt.timedelta(seconds=1))
    return emails


def claim(db: Database, owner: str) -> list[str]:
    with db.sessions.begin() as s:
        rows, _ = outbox.claim(s, owner=owner, now=utc(), lease_seconds=LEASE, limit=100)
    return sorted(r.email for r in rows)


def expiries(db: Database) -> list[dt.datetime | None]:
    with db.sessions.begin() as s:
        return list(s.scalars(select(Delivery.lease_expires_at).order_by(Delivery.id)))


def held_by(db: Database, owner: str) -> int:
    with db.sessions.begin() as s:
        return len(s.scalars(select(Delivery.id).where(Delivery.lease_owner == owner)).all())


def test_a_heartbeat_keeps_its_rows_for_many_leases_and_renews_nothing_once_closed(
    db: Database,
) -> None:
    emails = queue(db, 5)
    assert claim(db, "alive") == emails
    with heartbeat(db.sessions, db.settings, "alive") as beat:
        time.sleep(4 * LEASE)  # four leases: without renewal the rows would have expired
        assert claim(db, "thief") == []
        assert all(e is not None and e > utc() for e in expiries(db))
    assert beat.beats >= 8 and beat.failures == 0
    assert not beat._thread.is_alive()
    frozen = expiries(db)
    time.sleep(3 * beat.interval)
    assert expiries(db) == frozen  # closed: never renewed again
    assert beat.beat() == 0  # and a beat asked for by hand does nothing either
    assert wait_for(lambda: claim(db, "thief") == emails, timeout=5 * LEASE, step=0.05)


def test_a_heartbeat_renews_only_its_own_owners_rows(db: Database) -> None:
    emails = queue(db, 6)
    with db.sessions.begin() as s:
        outbox.claim(s, owner="mine", now=utc(), lease_seconds=LEASE, limit=2)
        outbox.claim(s, owner="dead", now=utc(), lease_seconds=LEASE, limit=4)
    with heartbeat(db.sessions, db.settings, "mine"):
        assert wait_for(lambda: len(claim(db, "thief")) == 4, timeout=5 * LEASE, step=0.05)
        time.sleep(2 * LEASE)
        with db.sessions.begin() as s:
            owners = dict(s.execute(select(Delivery.subscriber_id, Delivery.lease_owner)).all())
    assert sorted(owners.values()) == ["mine"] * 2 + ["thief"] * 4
    assert len(emails) == 6


def test_a_failed_renewal_is_logged_and_the_heartbeat_goes_on(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # A database without its tables yet (as while a restore runs): every renewal fails.
    url = f"sqlite:///{tmp_path / 'later.db'}"
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    caplog.set_level(logging.DEBUG, logger="weekly_mailer.delivery.heartbeat")
    beat = heartbeat(sessions, settings, "w").start()
    try:
        assert wait_for(lambda: beat.failures >= 2, timeout=5, step=0.05)
        assert beat._thread.is_alive()
        assert (
            "heartbeat: could not renew the leases (DatabaseUnavailableError: OperationalError"
            in caplog.text
        )
        upgrade(engine)  # the database is back: the next beats work
        failures = beat.failures
        assert wait_for(lambda: beat.beats >= 2, timeout=5, step=0.05)
        assert beat.failures == failures
    finally:
        beat.close()
        engine.dispose()


def test_a_worker_keeps_its_batch_while_the_smtp_server_stalls_longer_than_the_lease(
    db: Database,
) -> None:
    """One reply takes five leases; meanwhile nobody may take the worker's rows, and every
    reader gets exactly one copy."""
    slow = "user0001@example.org"
    with SlowSMTPServer(lambda rcpt: 5 * LEASE if rcpt == slow else 0.0) as server:
        settings = db.settings.replace(backend_url=server.url, concurrency=2, batch_size=10)
        emails = queue(db, 6)
        backend = resolve_backend(settings)
        worker = Worker(db.sessions, settings, backend, SimpleRenderers())
        thread = threading.Thread(target=worker.run)
        with backend:
            thread.start()
            assert wait_for(lambda: len(server.received()) >= 5, timeout=10, step=0.01)
            stolen: list[str] = []
            deadline = time.monotonic() + 3 * LEASE  # the stall is still going on
            while time.monotonic() < deadline:
                stolen += claim(db, "thief")
                time.sleep(0.05)
            thread.join(15)
        assert not thread.is_alive()
        got = recipients(server.received())
    beats = [t for t in threading.enumerate() if t.name == f"heartbeat {worker.owner}"]
    assert beats == []  # the run is over: its heartbeat is too
    assert stolen == []
    assert set(got) == set(emails) and max(got.values()) == 1
    with db.sessions.begin() as s:
        assert set(s.scalars(select(Delivery.status))) == {"sent"}


class SlowToLoad(SimpleRenderers):
    """An issue that takes five leases to load (a large issue on a busy host): the worker holds
    its claimed batch all that time without recording anything."""

    def for_issue(self, issue_id: int):  # type: ignore[no-untyped-def]
        time.sleep(5 * LEASE)
        return super().for_issue(issue_id)


def test_a_worker_keeps_its_batch_while_the_issue_loads_for_longer_than_the_lease(
    db: Database,
) -> None:
    emails = queue(db, 4)
    with SlowSMTPServer(lambda rcpt: 0.0) as server:
        settings = db.settings.replace(backend_url=server.url, concurrency=2, batch_size=10)
        backend = resolve_backend(settings)
        worker = Worker(db.sessions, settings, backend, SlowToLoad())
        thread = threading.Thread(target=worker.run)
        with backend:
            thread.start()
            assert wait_for(lambda: held_by(db, worker.owner) == 4, timeout=10, step=0.01)
            stolen: list[str] = []
            deadline = time.monotonic() + 4 * LEASE
            while time.monotonic() < deadline:
                stolen += claim(db, "thief")
                time.sleep(0.05)
            thread.join(15)
        got = recipients(server.received())
    assert stolen == []
    assert set(got) == set(emails) and max(got.values()) == 1
