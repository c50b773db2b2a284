"""Fixtures for the web tests (loaded with ``pytest_plugins``): clock, backend, app, client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.web import Clock
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.store.db import Database
from weekly_mailer.web import close_app, create_app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def web_settings(settings: Settings) -> Settings:
    return settings


@pytest.fixture
def app(
    web_settings: Settings, database: Database, backend: MemoryBackend, clock: Clock
) -> Iterator[Flask]:
    # No confirmation thread: the tests deliver the outbox's rows themselves (flush_mail).
    flask_app = create_app(
        web_settings, db=database, backend=backend, clock=clock, deliver=False
    )
    flask_app.config["TESTING"] = True
    try:
        yield flask_app
    finally:
        close_app(flask_app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
