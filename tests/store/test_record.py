"""``outbox.record``: a batch of results written as the rows say, on SQLite and PostgreSQL.
Sent rows go by answer time, one statement for each (and at most ``_IDS_PER_STATEMENT`` ids in
one); deferred, failed and handed-back rows one execution each, only while the owner holds them."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from tests.support.delivery import add_subscribers, make_issue
from weekly_mailer.config import Settings
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database, make_engine, upgrade
from weekly_mailer.store.models import Delivery
from weekly_mailer.store.outbox.claims import _IDS_PER_STATEMENT

NOW = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)
FIRST = NOW + dt.timedelta(seconds=1, microseconds=250)
SECOND = NOW + dt.timedelta(seconds=2)


def _record_a_mixed_batch(db: Database) -> None:
    n = _IDS_PER_STATEMENT + 30  # one answer time's ids take two statements
    with db.sessions.begin() as s:
        add_subscribers(s, n + 40)
        outbox.enqueue(s, make_issue(s), now=NOW)
        rows, _ = outbox.claim(s, owner="w", now=NOW, lease_seconds=30, limit=n + 40)
        stolen, _ = outbox.claim(s, owner="x", now=NOW, lease_seconds=30, limit=10)
    assert len(rows) == n + 40 and not stolen
    first, second = rows[:n], rows[n : n + 20]
    deferred, failed, back = rows[n + 20 : n + 30], rows[n + 30 : n + 35], rows[n + 35 :]
    retry_at = NOW + dt.timedelta(minutes=5)
    outcomes = [
        *(outbox.Outcome(r, "sent", code=250, at=FIRST) for r in first),
        *(outbox.Outcome(r, "sent", code=251, at=SECOND) for r in second),
        *(
            outbox.Outcome(r, "deferred", code=451, error="try later", next_attempt_at=retry_at)
            for r in deferred
        ),
        *(outbox.Outcome(r, "failed", code=550, error="no such user") for r in failed),
        *(outbox.Outcome(r, "queued") for r in back),
    ]
    with db.sessions.begin() as s:
        outbox.record(s, outcomes, owner="w", now=NOW)
    with db.sessions.begin() as s:
        got = {
            r.id: r
            for r in s.execute(
                select(
                    Delivery.id, Delivery.status, Delivery.sent_at, Delivery.last_code,
                    Delivery.last_error, Delivery.attempts, Delivery.lease_owner,
                    Delivery.next_attempt_at,
                )  # fmt: skip
            )
        }
    for rows_, code, at in ((first, 250, FIRST), (second, 251, SECOND)):
        for r in rows_:
            g = got[r.delivery_id]
            assert (g.status, g.sent_at, g.last_code, g.attempts) == ("sent", at, code, 1)
            assert g.lease_owner is None and g.last_error == ""
    for r in deferred:
        g = got[r.delivery_id]
        assert (g.status, g.last_code, g.last_error, g.next_attempt_at) == (
            "deferred", 451, "try later", retry_at,
        )  # fmt: skip
    assert {got[r.delivery_id].status for r in failed} == {"failed"}
    assert {got[r.delivery_id].status for r in back} == {"queued"}
    assert all(got[r.delivery_id].attempts == 0 for r in back)


def test_record_writes_each_kind_of_result(database: Database) -> None:
    _record_a_mixed_batch(database)


@pytest.mark.postgres
def test_postgres_record_writes_each_kind_of_result(pg_url: str, settings: Settings) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    with Database(settings.replace(database_url=pg_url)) as db:
        _record_a_mixed_batch(db)


def test_a_result_recorded_under_a_lost_lease_changes_nothing(database: Database) -> None:
    """The fence: once another claim holds the rows (a new ``lease_token``), the old claim's
    results, sent ones included, change no row; the new claim's own results are written."""
    with database.sessions.begin() as s:
        add_subscribers(s, 2)
        outbox.enqueue(s, make_issue(s), now=NOW)
        rows, _ = outbox.claim(s, owner="w", now=NOW, lease_seconds=30, limit=2)
    later = NOW + dt.timedelta(minutes=1)  # w's lease expired; x took both rows
    with database.sessions.begin() as s:
        again, _ = outbox.claim(s, owner="x", now=later, lease_seconds=30, limit=2)
    assert len(again) == 2
    with database.sessions.begin() as s:
        outbox.record(
            s,
            [
                outbox.Outcome(rows[0], "sent", code=250, at=NOW),
                outbox.Outcome(rows[1], "failed", code=550, error="no"),
            ],
            owner="w",
            now=NOW,
        )
    with database.sessions.begin() as s:
        status = {i: st for i, st in s.execute(select(Delivery.id, Delivery.status))}
    assert status == {rows[0].delivery_id: "sending", rows[1].delivery_id: "sending"}
    with database.sessions.begin() as s:
        written = outbox.record(
            s, [outbox.Outcome(r, "sent", code=250, at=later) for r in again], owner="x", now=later
        )
    assert len(written) == 2
    with database.sessions.begin() as s:
        tokens = set(s.scalars(select(Delivery.lease_token)))
        status = {i: st for i, st in s.execute(select(Delivery.id, Delivery.status))}
    assert set(status.values()) == {"sent"} and tokens == {None}
