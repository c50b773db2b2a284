"""Helpers for the web tests: a settable clock, sign-up, DB look-ups and snapshots."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from tests.support.web_server import CSRF_TOKEN
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import EventKind, Subscriber, SubscriberEvent
from weekly_mailer.subscribers.optin import signup_binding
from weekly_mailer.tokens import Purpose, TokenSigner

START = dt.datetime(2026, 11, 18, 12, 0, tzinfo=dt.UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def csrf_token(client: FlaskClient) -> str:
    """GET / and return the form's CSRF token (the client keeps the cookie)."""
    page = client.get("/").get_data(as_text=True)
    m = CSRF_TOKEN.search(page)
    assert m, page
    return m.group(1)


def sign_up(client: FlaskClient, email: str, name: str = "", **extra: str) -> Any:
    token = csrf_token(client)
    return client.post(
        "/subscribe", data={"csrf_token": token, "email": email, "name": name, **extra}
    )


def flush_mail(app: Flask) -> None:
    """Deliver the confirmation rows due now, as ``serve``'s thread would: a real Worker on the
    outbox (confirmations only), with the app's backend and clock, until nothing is due."""
    from weekly_mailer.delivery.run import deliver_confirmations
    from weekly_mailer.errors import BackendUnavailableError

    web = app.extensions["weekly_mailer"]
    assert web.backend is not None, "create the app with a backend (and deliver=False)"
    try:
        deliver_confirmations(web.db.sessions, web.settings, web.backend, clock=web.clock)
    except BackendUnavailableError:
        pass  # the rows stay queued, as under serve


def settle_mail(app: Flask, clock: Clock, *, rounds: int = 50) -> None:
    """Deliver confirmations, moving the clock on to each retry, until every row is settled
    (sent, failed or skipped): what ``serve``'s thread does over hours, in a moment."""
    from weekly_mailer.store import outbox

    web = app.extensions["weekly_mailer"]
    for _ in range(rounds):
        flush_mail(app)
        with web.db.sessions.begin() as session:
            due = outbox.next_due(session, kind="confirmation")
        if due is None:
            return
        clock.now = max(clock.now, due) + dt.timedelta(seconds=1)
    raise AssertionError("the confirmation rows did not settle")


def outbox_rows(db: Database, email: str) -> list[tuple[str, str, int]]:
    """The confirmation rows of ``email``: (status, last_error, attempts), oldest first."""
    with db.engine.connect() as conn:
        return [
            (r.status, r.last_error, r.attempts)
            for r in conn.execute(
                text(
                    "SELECT d.status, d.last_error, d.attempts FROM delivery d JOIN subscriber s"
                    " ON s.id = d.subscriber_id WHERE d.kind = 'confirmation'"
                    " AND s.email_key = :k ORDER BY d.id"
                ),
                {"k": email.lower()},
            )
        ]


def subscriber(db: Database, email: str) -> Subscriber | None:
    with db.sessions.begin() as session:
        return session.scalars(
            select(Subscriber).where(Subscriber.email_key == email.lower())
        ).one_or_none()


def events(db: Database, email: str, kind: EventKind | None = None) -> list[SubscriberEvent]:
    with db.sessions.begin() as session:
        stmt = (
            select(SubscriberEvent)
            .join(Subscriber)
            .where(Subscriber.email_key == email.lower())
            .order_by(SubscriberEvent.id)
        )
        if kind is not None:
            stmt = stmt.where(SubscriberEvent.kind == kind.value)
        return list(session.scalars(stmt))


def token_for(
    settings: Settings, sub: Subscriber, purpose: Purpose, db: Database | None = None
) -> str:
    """A token as the mailer makes it; a confirm token is bound to the current sign-up, read
    from ``db``."""
    bound = ""
    if purpose == Purpose.CONFIRM:
        assert db is not None, "a confirm token is bound to its sign-up: pass the database"
        with db.sessions() as session:
            bound = signup_binding(session, sub.id)
    return TokenSigner(settings.secret_key).make(purpose, sub.id, sub.email_key, bound_to=bound)


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table we own, for before/after comparisons."""
    tables = ("subscriber", "subscriber_event", "issue", "delivery")
    with db.engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
            for t in tables
        }


@contextmanager
def app_on_postgresql(
    settings: Settings, pg_url: str, backend: MemoryBackend
) -> Iterator[tuple[Flask, Database, Settings]]:
    """The app (no confirmation thread, a test clock) on a freshly migrated PostgreSQL
    database: the app, its database and its settings."""
    from weekly_mailer.store.db import make_engine, upgrade
    from weekly_mailer.web import close_app, create_app

    pg_settings = settings.replace(database_url=pg_url)
    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    with Database(pg_settings) as database:
        app = create_app(pg_settings, db=database, backend=backend, clock=Clock(), deliver=False)
        try:
            yield app, database, pg_settings
        finally:
            close_app(app)
