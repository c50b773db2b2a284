"""Migrations: upgrade → downgrade → upgrade on SQLite and PostgreSQL; models agree with them."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import delete, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from weekly_mailer.store.bounce_models import BounceEvent
from weekly_mailer.store.db import current_revision, downgrade, head_revision, make_engine, upgrade
from weekly_mailer.store.models import Base, Subscriber

TABLES = {
    "subscriber",
    "subscriber_event",
    "issue",
    "delivery",
    "bounce_event",
    "week_hold",
    "domain_pause",
    "address_change",
    "erasure",
    "proof",
    "proof_copy",
    "proof_decision",
}


def _round_trip(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
        assert TABLES <= set(inspect(engine).get_table_names())
        downgrade(engine, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        _bounce_event_outlives_its_subscriber(engine)
    finally:
        engine.dispose()


def _bounce_event_outlives_its_subscriber(engine: Engine) -> None:
    """bounce_event.subscriber_id is ON DELETE SET NULL: evidence stays when a reader is removed."""
    with Session(engine) as session, session.begin():
        sub = Subscriber(email="a@example.org", email_key="a@example.org", status="active")
        session.add(sub)
        session.flush()
        session.add(BounceEvent(kind="hard", subscriber_id=sub.id, recipient="a@example.org"))
    with Session(engine) as session, session.begin():
        session.execute(delete(Subscriber))
    with Session(engine) as session:
        rows = [(e.kind, e.subscriber_id) for e in session.scalars(select(BounceEvent))]
    assert rows == [("hard", None)]


def test_sqlite_up_down_up_and_agreement(tmp_path: Path) -> None:
    _round_trip(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_postgres_up_down_up_and_agreement(pg_url: str) -> None:
    _round_trip(pg_url)


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    engine.dispose()


def _outbox_kinds(url: str) -> None:
    """0002 on a table with rows: old rows become issue copies; a downgrade drops confirmations."""
    from sqlalchemy import text

    engine = make_engine(url)
    try:
        upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO subscriber (id, email, email_key, name, status, created_at, "
                    "updated_at, consent_source, source, bounce_count) VALUES (1, 'a@x.org', "
                    "'a@x.org', '', 'active', :t, :t, '', '', 0)"
                ),
                {"t": "2026-11-25 10:00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO issue (id, send_week, status, reason, subject, title, slug, "
                    "source, source_key, canonical_url, author, summary, article, html_template,"
                    " text_template, archive_html, created_at) VALUES (1, '2026-11-25', 'sent',"
                    " '', '', '', '', '', '', '', '', '', '{}', '', '', '', :t)"
                ),
                {"t": "2026-11-25 10:00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO delivery (issue_id, subscriber_id, status, attempts, "
                    "created_at, last_error) VALUES (1, 1, 'sent', 1, :t, '')"
                ),
                {"t": "2026-11-25 10:00:00"},
            )
        upgrade(engine)
        with engine.begin() as conn:
            assert conn.execute(text("SELECT kind FROM delivery")).scalars().all() == ["issue"]
            conn.execute(
                text(
                    "INSERT INTO delivery (kind, issue_id, subscriber_id, status, attempts, "
                    "created_at, last_error) VALUES ('confirmation', NULL, 1, 'queued', 0, :t, '')"
                ),
                {"t": "2026-11-25 10:00:00"},
            )
        downgrade(engine, "0001")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT issue_id FROM delivery")).scalars().all() == [1]
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_sqlite_outbox_kinds_survive_up_and_down(tmp_path: Path) -> None:
    _outbox_kinds(f"sqlite:///{tmp_path / 'k.db'}")


@pytest.mark.postgres
def test_postgres_outbox_kinds_survive_up_and_down(pg_url: str) -> None:
    _outbox_kinds(pg_url)


def _bounce_events_get_their_deliverys_issue(url: str) -> None:
    """0004 on a table with rows: a bounce_event tied to a delivery gets that delivery's issue."""
    from sqlalchemy import text

    engine = make_engine(url)
    t = {"t": "2026-11-25 10:00:00"}
    try:
        upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO subscriber (id, email, email_key, name, status, created_at, "
                    "updated_at, consent_source, source, bounce_count) VALUES (1, 'a@x.org', "
                    "'a@x.org', '', 'active', :t, :t, '', '', 0)"
                ),
                t,
            )
            conn.execute(
                text(
                    "INSERT INTO issue (id, send_week, status, reason, subject, title, slug, "
                    "source, source_key, canonical_url, author, summary, article, html_template,"
                    " text_template, archive_html, created_at) VALUES (7, '2026-11-25', 'sent',"
                    " '', '', '', '', '', '', '', '', '', '{}', '', '', '', :t)"
                ),
                t,
            )
            conn.execute(
                text(
                    "INSERT INTO delivery (id, issue_id, subscriber_id, status, attempts, "
                    "created_at, last_error) VALUES (3, 7, 1, 'failed', 1, :t, '')"
                ),
                t,
            )
            for delivery_id in ("3", "NULL"):
                conn.execute(
                    text(
                        "INSERT INTO bounce_event (at, kind, subscriber_id, delivery_id, "
                        "recipient, domain, status, reason, source, message_id) VALUES (:t, "
                        f"'hard', 1, {delivery_id}, 'a@x.org', 'x.org', '5.1.1', '', 'smtp', '')"
                    ),
                    t,
                )
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT delivery_id, issue_id FROM bounce_event")).all()
        assert sorted(rows, key=str) == sorted([(3, 7), (None, None)], key=str)
        downgrade(engine, "0003")
        upgrade(engine)
    finally:
        engine.dispose()


def test_sqlite_bounce_events_get_their_deliverys_issue(tmp_path: Path) -> None:
    _bounce_events_get_their_deliverys_issue(f"sqlite:///{tmp_path / 'b.db'}")


@pytest.mark.postgres
def test_postgres_bounce_events_get_their_deliverys_issue(pg_url: str) -> None:
    _bounce_events_get_their_deliverys_issue(pg_url)


def test_the_head_commands_check_against_is_alembics(tmp_path: Path) -> None:
    """Every command checks the schema against ``SCHEMA_HEAD`` and reads ``alembic_version``
    itself (loading Alembic costs ~85 ms of every start): the constant is Alembic's head, and
    the revision read is Alembic's own at each step up and down."""
    from weekly_mailer.errors import DatabaseNotReadyError
    from weekly_mailer.store.db import SCHEMA_HEAD, check_ready

    assert SCHEMA_HEAD == head_revision(), "a new migration: update store/db.SCHEMA_HEAD"
    engine = make_engine(f"sqlite:///{tmp_path / 'revisions.db'}")
    try:
        assert current_revision(engine) is None  # no alembic_version table yet
        upgrade(engine)
        for target in ("0003", "0001", "base"):
            downgrade(engine, target)
            with engine.connect() as conn:
                theirs = MigrationContext.configure(conn).get_current_revision()
            assert current_revision(engine) == theirs == (None if target == "base" else target)
        upgrade(engine)
        downgrade(engine, "0005")
        with pytest.raises(
            DatabaseNotReadyError, match=f"at migration 0005, this version needs {SCHEMA_HEAD}"
        ):
            check_ready(engine)
        upgrade(engine)
        check_ready(engine)
        assert current_revision(engine) == SCHEMA_HEAD
    finally:
        engine.dispose()
