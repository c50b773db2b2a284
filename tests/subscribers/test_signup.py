"""Sign-up is one service call in one transaction at both doors (the web form and
``subscribers add``): the subscriber and their confirmation e-mail's outbox row are committed
together or not at all, and both doors leave the same trail."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import init_in, run_cli
from tests.support.web import sign_up
from weekly_mailer.config import Settings, load_settings
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery, Subscriber, SubscriberEvent

pytest_plugins = ["tests.support.web_fixtures"]

# A real fault at the worst moment: the outbox refuses the confirmation e-mail's row.
NO_OUTBOX = (
    "CREATE TRIGGER no_outbox BEFORE INSERT ON delivery "
    "BEGIN SELECT RAISE(ABORT, 'the outbox is full'); END"
)


def _sqlite_file(settings: Settings) -> str:
    return settings.database_url.removeprefix("sqlite:///")


def _trail(db: Database, email: str) -> tuple[str, list[str], list[str]]:
    with db.sessions.begin() as session:
        sub = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        kinds = list(
            session.scalars(
                select(SubscriberEvent.kind)
                .where(SubscriberEvent.subscriber_id == sub.id)
                .order_by(SubscriberEvent.id)
            )
        )
        rows = list(session.scalars(select(Delivery.kind).where(Delivery.subscriber_id == sub.id)))
        return sub.status, kinds, rows


def test_subscribers_add_commits_the_subscriber_and_the_email_together(workdir: Path) -> None:
    init_in(workdir)
    settings = load_settings(workdir / "weekly_mailer.toml", environ={})
    with sqlite3.connect(_sqlite_file(settings)) as conn:
        conn.execute(NO_OUTBOX)
    failed = run_cli("subscribers", "add", "ann@example.org", cwd=workdir)
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    assert "Added" not in failed.stdout
    # Nothing half-done: no pending subscriber left without their confirmation e-mail.
    assert run_cli("subscribers", "count", cwd=workdir).stdout == "0\n"

    with sqlite3.connect(_sqlite_file(settings)) as conn:
        conn.execute("DROP TRIGGER no_outbox")
    added = run_cli("subscribers", "add", "ann@example.org", cwd=workdir)
    assert added.returncode == 0, added.stderr
    assert added.stdout == (
        "Added ann@example.org (pending).\nSent the confirmation link to ann@example.org.\n"
    )
    assert len(list((workdir / "outbox").glob("*.eml"))) == 1
    with Database(settings) as db:
        assert _trail(db, "ann@example.org") == (
            "pending",
            ["subscribed", "confirmation_sent"],
            ["confirmation"],
        )


def test_the_form_commits_nothing_when_the_email_cannot_be_queued(
    app: Flask, client: FlaskClient, database: Database, settings: Settings
) -> None:
    with sqlite3.connect(_sqlite_file(settings)) as conn:
        conn.execute(NO_OUTBOX)
    sign_up(client, "bob@example.org")  # whatever it answers (it never tells who exists)
    with database.sessions.begin() as session:
        assert session.scalars(select(Subscriber)).all() == []
    with sqlite3.connect(_sqlite_file(settings)) as conn:
        conn.execute("DROP TRIGGER no_outbox")
    assert sign_up(client, "bob@example.org").status_code == 200
    # The same trail as `subscribers add`: one service function behind both doors.
    assert _trail(database, "bob@example.org") == (
        "pending",
        ["subscribed", "confirmation_sent"],
        ["confirmation"],
    )
