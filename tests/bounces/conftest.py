"""Fixtures of the report tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from weekly_mailer.config import Settings
from weekly_mailer.store.db import Database, make_engine, upgrade


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def trust_db(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Database]:
    """A migrated database, SQLite or PostgreSQL, with VERP on (``bounce_address``)."""
    settings = settings.replace(bounce_address="bounces@example.org", verp=True)
    if request.param == "postgresql":
        settings = settings.replace(database_url=request.getfixturevalue("pg_url"))
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    with Database(settings) as db:
        yield db
