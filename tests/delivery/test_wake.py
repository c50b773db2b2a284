"""The runner waiting for work (``serve``'s confirmations, ``run``'s delivery) delivers a
confirmation committed meanwhile at once when woken, not at its next poll."""

from __future__ import annotations

import threading
import time

from weekly_mailer import subscribers as subs
from weekly_mailer.clock import utcnow
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.delivery.runner import Runner
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database


def test_waking_the_runner_wakes_a_waiting_worker(database: Database, settings: Settings) -> None:
    backend = MemoryBackend()
    service = Runner(settings, database.sessions, backend)
    thread = threading.Thread(target=service.run, kwargs={"until_idle": False, "poll": 60.0})
    thread.start()
    try:
        time.sleep(0.3)  # idle, waiting up to a minute
        with database.sessions.begin() as s:
            sub = subs.add(s, "ann@example.org", source="test")
            outbox.enqueue_confirmation(s, sub.id, now=utcnow())
        started = time.monotonic()
        service.wake()
        while not backend.sent and time.monotonic() - started < 5:
            time.sleep(0.02)
        assert [e.recipient for e in backend.sent] == ["ann@example.org"]
        assert time.monotonic() - started < 2
    finally:
        service.stop.set()
        thread.join(10)
    assert not thread.is_alive()
