"""A migrated database for a test: ``migrate(url)`` is Alembic's ``upgrade head`` on it.

A new SQLite file is a copy of one template that Alembic migrated once in this test session:
the same bytes ``upgrade head`` writes into an empty file (the migrations' data steps only touch
rows an empty database does not have), in a millisecond instead of about 130 ms, for the few
hundred tests that start from an empty, migrated database. Any other database (PostgreSQL, a
SQLite file that exists already) is migrated by Alembic itself. The migrations are run and
checked as such by tests/store/test_migrations.py.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from weekly_mailer.store.db import make_engine, upgrade

_template: Path | None = None


def _alembic(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def _sqlite_template() -> Path:
    global _template
    if _template is None:
        folder = Path(tempfile.mkdtemp(prefix="wm-schema-"))
        atexit.register(shutil.rmtree, folder, True)
        template = folder / "template.db"
        _alembic(f"sqlite:///{template}")
        leftovers = [p.name for p in folder.iterdir() if p != template]
        assert not leftovers, f"the migrated template is more than one file: {leftovers}"
        _template = template
    return _template


def migrate(url: str) -> None:
    """``upgrade head`` on the database at ``url`` (see the module docstring)."""
    path = url.removeprefix("sqlite:///")
    plain_file = url.startswith("sqlite:///") and "?" not in url and path not in ("", ":memory:")
    if plain_file and not Path(path).exists():
        shutil.copyfile(_sqlite_template(), path)
        return
    _alembic(url)
