"""The outbox at scale: enqueue is idempotent on both engines, and on PostgreSQL with 250,000
delivery rows (ANALYZEd) claim, record, the per-issue counts and the metrics' outbox depth use
indexes, never a
sequential scan of ``delivery``, and a claim only ranges over a partial index of due or leased
rows (EXPLAIN (FORMAT JSON) of the statements they really send)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine import Engine

from tests.support.delivery import add_subscribers, make_issue
from weekly_mailer.store import gauges, outbox
from weekly_mailer.store.db import make_engine, make_sessionmaker, upgrade
from weekly_mailer.store.models import Delivery, Issue
from weekly_mailer.store.outbox import Outcome

NOW = dt.datetime(2026, 11, 25, 16, 0, tzinfo=dt.UTC)


def _enqueue_twice(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    try:
        with sessions.begin() as s:
            add_subscribers(s, 30)
            issue = make_issue(s)
            assert outbox.enqueue(s, issue, now=NOW) == 30
        with sessions.begin() as s:
            add_subscribers(s, 5, domain="later.example.org")
            issue = s.get_one(Issue, issue.id)
            assert outbox.enqueue(s, issue, now=NOW) == 5  # only the new readers
            assert outbox.enqueue(s, issue, now=NOW) == 0
        with sessions.begin() as s:
            rows = s.scalars(select(Delivery.subscriber_id).where(Delivery.issue_id == issue.id))
            ids = list(rows)
        assert len(ids) == len(set(ids)) == 35
    finally:
        engine.dispose()


def test_enqueue_adds_only_missing_rows_sqlite(tmp_path: Any) -> None:
    _enqueue_twice(f"sqlite:///{tmp_path / 'e.db'}")


@pytest.mark.postgres
def test_enqueue_adds_only_missing_rows_postgres(pg_url: str) -> None:
    _enqueue_twice(pg_url)


CLAIM_INDEXES = {"ix_delivery_open", "ix_delivery_confirm_due", "ix_delivery_leased"}
SUBSCRIBERS = 50_000
OLD_ISSUES = 4  # sent weeks: 200,000 rows in final states, in none of the partial indexes


def _load(engine: Engine) -> int:
    """50,000 readers; four sent issues and a sending one (half sent, half queued): 250,000
    delivery rows, made by the database itself. Returns the sending issue's id."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscriber (email, email_key, name, status, created_at, updated_at,"
                " consent_source, source, bounce_count) SELECT 'r' || g || '@example.org', "
                "'r' || g || '@example.org', '', 'active', :t, :t, '', '', 0 "
                "FROM generate_series(1, :n) g"
            ),
            {"t": NOW, "n": SUBSCRIBERS},
        )
        for week in range(OLD_ISSUES + 1):
            status = "sent" if week < OLD_ISSUES else "sending"
            issue_id = conn.execute(
                text(
                    "INSERT INTO issue (send_week, status, reason, subject, title, slug, source,"
                    " source_key, canonical_url, author, summary, article, html_template, "
                    "text_template, archive_html, created_at) VALUES (:w, :s, '', '', '', '', "
                    "'', '', '', '', '', '{}', '', '', '', :t) RETURNING id"
                ),
                {"w": dt.date(2026, 10, 7) + dt.timedelta(weeks=week), "s": status, "t": NOW},
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO delivery (kind, issue_id, subscriber_id, status, attempts, "
                    "created_at, next_attempt_at, sent_at, last_error) SELECT 'issue', :i, id, "
                    "CASE WHEN :s = 'sent' OR id % 2 = 0 THEN 'sent' ELSE 'queued' END, 1, :t, "
                    ":t, :t, '' FROM subscriber ORDER BY id"
                ),
                {"i": issue_id, "s": status, "t": NOW},
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    return int(issue_id)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.postgres
def test_claim_record_and_counts_use_indexes_with_many_rows(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    try:
        issue_id = _load(engine)
        sent: list[tuple[str, Any]] = []

        @event.listens_for(engine, "before_cursor_execute")
        def grab(conn: Any, cursor: Any, sql: str, params: Any, ctx: Any, many: bool) -> None:
            if "delivery" in sql and not sql.lstrip().upper().startswith("EXPLAIN"):
                sent.append((sql, params[0] if many else params))

        sessions = make_sessionmaker(engine)
        with sessions.begin() as s:
            rows, _ = outbox.claim(
                s, owner="w1", now=NOW, lease_seconds=30, limit=200, issue_id=issue_id
            )
            assert len(rows) == 200
            everyone, _ = outbox.claim(s, owner="w2", now=NOW, lease_seconds=30, limit=200)
            assert len(everyone) == 200
            outbox.record(
                s, [Outcome(r, "sent", code=250) for r in rows], owner="w1", now=NOW
            )
            counts = outbox.counts(s, issue_id)
            assert counts["sent"] == SUBSCRIBERS // 2 + 200
        with engine.connect() as conn:  # what a metrics scrape reads (outbox depth by state)
            depth = gauges.read(conn).depth
        assert depth[("issue", "queued")] == SUBSCRIBERS // 2 - 400
        event.remove(engine, "before_cursor_execute", grab)
        kinds = {"claim": 0, "record": 0, "counts": 0}
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            for sql, params in sent:
                cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
                plan = json.loads(json.dumps(cursor.fetchone()[0]))[0]["Plan"]
                scans = [
                    n["Node Type"]
                    for n in _nodes(plan)
                    if n.get("Relation Name") == "delivery"
                ]
                assert scans, sql
                assert "Seq Scan" not in scans, (sql, scans)
                if "FOR UPDATE SKIP LOCKED" in sql:
                    kinds["claim"] += 1
                    # A range of a partial index, never a walk of the primary key through
                    # every row ever sent.
                    used = {n.get("Index Name") for n in _nodes(plan) if n.get("Index Name")}
                    allowed = set(CLAIM_INDEXES)
                    if "delivery.status = 'sending'" in sql:  # (issue, 'sending'): leased rows
                        allowed.add("ix_delivery_issue_status")
                    assert used and used <= allowed, (sql, used)
                elif sql.lstrip().startswith("UPDATE") and "lease_owner" in sql:
                    kinds["record"] += 1
                elif "count(*)" in sql and "GROUP BY" in sql:  # the issue's, the depth gauge
                    kinds["counts"] += 1
            raw.rollback()
        finally:
            raw.close()
        # The issue's claim: expired leases, then due copies; anyone's: confirmations too.
        assert kinds["claim"] == 5 and kinds["record"] >= 1 and kinds["counts"] == 2, kinds
    finally:
        engine.dispose()


def test_sqlite_claims_range_over_indexes_never_the_whole_table(tmp_path: Any) -> None:
    """SQLite's planner, given ``ORDER BY delivery.id``, would rather walk the whole table in id
    order than sort the few rows an index finds: every claim of ``worker`` (every sending
    issue and the confirmations) then read every row ever sent. Its plans (EXPLAIN QUERY
    PLAN of the statements really sent) name an index for ``delivery``, for the claim of one
    issue (``send``) and of everyone's rows (``worker``)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'scale.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    try:
        with sessions.begin() as s:
            add_subscribers(s, 40)
            issue = make_issue(s)
            outbox.enqueue(s, issue, now=NOW)
            issue_id = issue.id
        sent: list[tuple[str, Any]] = []

        @event.listens_for(engine, "before_cursor_execute")
        def grab(conn: Any, cursor: Any, sql: str, params: Any, ctx: Any, many: bool) -> None:
            if sql.lstrip().startswith("SELECT delivery.id") and "LIMIT" in sql:
                sent.append((sql, params))

        with sessions.begin() as s:
            one, _ = outbox.claim(
                s, owner="w1", now=NOW, lease_seconds=30, limit=10, issue_id=issue_id
            )
            everyone, _ = outbox.claim(s, owner="w2", now=NOW, lease_seconds=30, limit=10)
        assert len(one) == len(everyone) == 10
        event.remove(engine, "before_cursor_execute", grab)
        assert len(sent) == 5  # leases then copies; leases, confirmations, copies
        with engine.connect() as conn:
            for sql, params in sent:
                plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)]
                on_delivery = [d for d in plan if d.split()[1:2] == ["delivery"]]
                assert on_delivery and all("INDEX" in d for d in on_delivery), (sql, plan)
    finally:
        engine.dispose()
