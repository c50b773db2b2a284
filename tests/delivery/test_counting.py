"""The delivery counters agree with the ledger: counted where results are written, when the
transaction commits (a rolled-back batch counts nothing)."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from sqlalchemy import func, select

from tests.support.delivery import SimpleRenderers, add_subscribers, make_issue
from tests.support.smtpd import Faults, SMTPServer
from weekly_mailer import metrics
from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.delivery import resolve_backend
from weekly_mailer.delivery.results import write_outcomes
from weekly_mailer.delivery.worker import Worker
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery
from weekly_mailer.store.outbox import Outcome

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)


def counted() -> Counter[tuple[str, str, str]]:
    """The messages counter, (kind, outcome, bounce_class) -> value."""
    out: Counter[tuple[str, str, str]] = Counter()
    for family in metrics.REGISTRY.collect():
        for s in family.samples:
            if s.name == "weekly_mailer_messages_total":
                out[(s.labels["kind"], s.labels["outcome"], s.labels["bounce_class"])] += int(
                    s.value
                )
    return out


def ledger(db: Database) -> Counter[tuple[str, str]]:
    with db.sessions.begin() as s:
        rows = s.execute(
            select(Delivery.kind, Delivery.status, func.count()).group_by(
                Delivery.kind, Delivery.status
            )
        ).all()
    return Counter({(kind, status): int(n) for kind, status, n in rows})


def test_a_send_to_a_real_server_counts_what_the_ledger_holds(
    database: Database, settings: Settings
) -> None:
    refused = {"user0004@example.org", "user0011@example.org", "user0019@example.org"}
    with SMTPServer(Faults(refuse=refused)) as server:
        settings = settings.replace(backend_url=server.url, retry_initial_seconds=3600)
        with database.sessions.begin() as s:
            emails = add_subscribers(s, 24)
            issue = make_issue(s)
            outbox.enqueue(s, issue, now=NOW)
            for email in emails[:2]:  # they leave after the issue was queued: skipped
                sub = subs.get_by_email(s, email)
                assert sub is not None
                subs.unsubscribe(s, sub, source="test", now=NOW)
            pending = subs.add(s, "late@example.org")
            outbox.enqueue_confirmation(s, pending.id, now=NOW)
            subs.confirm(s, pending, source="test", now=NOW)  # needs no confirmation any more
        before = counted()
        backend = resolve_backend(settings)
        with backend:
            Worker(database.sessions, settings, backend, SimpleRenderers()).run()
        done = counted() - before

    rows = ledger(database)
    assert rows == {
        ("issue", "sent"): 19,
        ("issue", "failed"): 3,
        ("issue", "skipped"): 2,
        ("confirmation", "skipped"): 1,
    }
    assert done == {
        ("issue", "sent", "none"): 19,
        ("issue", "failed", "hard"): 3,  # 550 5.1.1: the one classifier says hard
        ("issue", "skipped", "none"): 2,
        ("confirmation", "skipped", "none"): 1,
    }
    assert len(server.received()) == 19


def test_a_batch_rolled_back_counts_nothing(database: Database) -> None:
    with database.sessions.begin() as s:
        add_subscribers(s, 3)
        outbox.enqueue(s, make_issue(s), now=NOW)
    with database.sessions.begin() as s:
        rows, _ = outbox.claim(s, owner="w1", now=NOW, lease_seconds=60, limit=10)
    before = counted()
    with pytest.raises(RuntimeError), database.sessions.begin() as s:
        outcomes = [Outcome(r, "sent", code=250) for r in rows]
        write_outcomes(s, outcomes, owner="w1", bounce_limit=3, now=NOW)
        raise RuntimeError("the database went away before the commit")
    assert counted() == before
    assert ledger(database) == {("issue", "sending"): 3}
    with database.sessions.begin() as s:  # the same batch, committed this time
        write_outcomes(s, [Outcome(r, "sent", code=250) for r in rows], owner="w1",
                       bounce_limit=3, now=NOW)  # fmt: skip
    assert (counted() - before) == {("issue", "sent", "none"): 3}
    assert ledger(database) == {("issue", "sent"): 3}
