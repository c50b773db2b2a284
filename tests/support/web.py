"""Helpers for the web tests: a settable clock, sign-up, DB look-ups and snapshots."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from weekly_mailer.config import Settings
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import EventKind, Subscriber, SubscriberEvent
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
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m, page
    return m.group(1)


def sign_up(client: FlaskClient, email: str, name: str = "", **extra: str) -> Any:
    token = csrf_token(client)
    return client.post(
        "/subscribe", data={"csrf_token": token, "email": email, "name": name, **extra}
    )


def flush_mail(app: Flask) -> None:
    """Wait for the background mailer to hand over everything queued."""
    state_ = app.extensions["weekly_mailer"]
    state_.mailer.join()


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


def token_for(settings: Settings, sub: Subscriber, purpose: Purpose) -> str:
    return TokenSigner(settings.secret_key).make(purpose, sub.id, sub.email_key)


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table we own, for before/after comparisons."""
    tables = ("subscriber", "subscriber_event", "issue", "delivery")
    with db.engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
            for t in tables
        }
