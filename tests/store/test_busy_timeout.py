"""``sqlite_busy_timeout_seconds``: the wait of every SQLite connection the app opens, read from
the file or the environment, kept within bounds. (That a lock held past it is one outage, said
and waited out, is tests/delivery/test_outages_e2e.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from weekly_mailer.config import load_settings
from weekly_mailer.errors import ConfigError
from weekly_mailer.store.db import Database, engine_for, upgrade


def _busy_ms(database: Database) -> int:
    with database.engine.connect() as con:
        return int(con.execute(text("PRAGMA busy_timeout")).scalar_one())


@pytest.mark.parametrize(("raw", "ms"), [(None, 30_000), ("2.5", 2_500), ("600", 600_000)])
def test_every_connection_waits_the_configured_time(
    tmp_path: Path, raw: str | None, ms: int
) -> None:
    environ = {"WEEKLY_MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'wm.db'}"}
    if raw is not None:
        environ["WEEKLY_MAILER_SQLITE_BUSY_TIMEOUT_SECONDS"] = raw
    settings = load_settings(environ=environ)
    engine = engine_for(settings)
    upgrade(engine)
    engine.dispose()
    with Database(settings) as database:
        assert _busy_ms(database) == ms


@pytest.mark.parametrize("raw", ["0", "-1", "3601", "soon"])
def test_a_bad_value_names_the_key(raw: str) -> None:
    with pytest.raises(ConfigError, match="sqlite_busy_timeout_seconds"):
        load_settings(environ={"WEEKLY_MAILER_SQLITE_BUSY_TIMEOUT_SECONDS": raw})
