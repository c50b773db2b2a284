"""Alembic environment for weekly_mailer (batch mode on, so SQLite can alter tables)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Engine

from weekly_mailer.store import (
    bounce_models,  # noqa: F401 - its table belongs in the metadata
    hold_models,  # noqa: F401 - so does this one
    proof_models,  # noqa: F401 - and the proofs'
    reader_models,  # noqa: F401 - and this one
)
from weekly_mailer.store.models import Base

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine  # type: ignore[no-any-return]
    from weekly_mailer.config import load_settings
    from weekly_mailer.store.db import make_engine

    url = config.get_main_option("sqlalchemy.url") or load_settings().database_url
    return make_engine(url)


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
