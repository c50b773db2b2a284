"""Engine and sessions, and the Alembic runner behind ``weekly-mailer db upgrade``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import (
    DatabaseError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import Session, sessionmaker

from weekly_mailer.errors import ConfigError, DatabaseNotReadyError, DatabaseUnavailableError
from weekly_mailer.paths import data_dir

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

    from weekly_mailer.config import Settings

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0  # sqlite_busy_timeout_seconds' default


def _sqlite_pragmas(busy_timeout: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take the write lock ourselves at BEGIN so concurrent writers queue on busy_timeout
        # instead of failing with "database is locked" on lock upgrade.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return on_connect


def _create_private(path: Path) -> None:
    """Create a new SQLite file readable by its owner only: it holds subscribers' addresses.

    An existing file keeps its mode (the operator's choice). SQLite gives the ``-wal`` and
    ``-shm`` files the database file's mode, whatever the umask.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigError(f"database_url: cannot create {str(path)!r}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)  # umask-independent
    finally:
        os.close(fd)


def _private_companions(dbapi_conn: Any, _record: Any) -> None:
    """Keep ``-wal`` and ``-shm`` as private as a private database file."""
    for _seq, name, file in dbapi_conn.execute("PRAGMA database_list").fetchall():
        if name != "main" or not file:
            continue
        try:
            if os.stat(file).st_mode & 0o077:
                return  # the operator chose a shared database file
        except OSError:
            return
        for suffix in ("-wal", "-shm"):
            try:
                companion = file + suffix
                if os.stat(companion).st_mode & 0o077:
                    os.chmod(companion, 0o600)
            except OSError:
                continue


READ_ONLY = "weekly_mailer_read_only"  # an execution option: a reader takes no write lock


def _sqlite_begin(conn: Any) -> None:
    read_only = conn.get_execution_options().get(READ_ONLY)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


@contextlib.contextmanager
def outage_guard() -> Iterator[None]:
    """Turn the database errors that mean "not now" into ``DatabaseUnavailableError`` (one
    line; the cause chained): a lost or refused connection, a server restarting, SQLite's lock
    held past the busy timeout, a full disk. Other errors (constraints, bugs) pass unchanged."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        raise DatabaseUnavailableError(outage_reason(exc)) from exc
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        raise DatabaseUnavailableError(outage_reason(exc)) from exc


def outage_reason(exc: BaseException) -> str:
    """The first line of the driver's own message, with its class: ``OperationalError:
    database is locked``."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first}"[:300]


def make_engine(
    database_url: str, *, busy_timeout: float = SQLITE_BUSY_TIMEOUT_SECONDS, **kwargs: Any
) -> Engine:
    """An engine for the URL; SQLite gets WAL, foreign keys and a busy timeout of
    ``busy_timeout`` seconds (``sqlite_busy_timeout_seconds``)."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        path = url.database
        if path and path != ":memory:":
            parent = Path(path).parent
            if not parent.exists():
                raise ConfigError(f"database_url: folder {str(parent)!r} does not exist")
            if not path.startswith("file:") and "uri" not in url.query:
                _create_private(Path(path))
        kwargs.setdefault("connect_args", {"timeout": busy_timeout})
    else:
        # A pooled connection a server restart cut is replaced when it is checked out, not
        # failed on at its first use (after an outage the delivery runner waited out, the
        # command's own last read would otherwise meet it).
        kwargs.setdefault("pool_pre_ping", True)
    try:
        engine = create_engine(url, **kwargs)
    except (ImportError, NoSuchModuleError) as exc:
        hint = (
            " (pip install 'weekly-mailer[postgres]')"
            if url.get_backend_name() == "postgresql"
            else ""
        )
        raise ConfigError(
            f"database_url: the driver {url.drivername!r} is not installed{hint}: {exc}"
        ) from exc
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
        event.listen(engine, "connect", _private_companions)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def engine_for(settings: Settings) -> Engine:
    """:func:`make_engine` for ``settings.database_url``, with its busy timeout."""
    return make_engine(settings.database_url, busy_timeout=settings.sqlite_busy_timeout_seconds)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (CLI output reads them)."""
    return sessionmaker(engine, expire_on_commit=False)


@lru_cache(maxsize=1)
def migrations_dir() -> Path:
    """The Alembic script folder: inside the wheel, or the checkout's top-level ``migrations/``."""
    found = data_dir("_migrations", "migrations", marker="env.py")
    if found is None:
        raise DatabaseNotReadyError("the migrations folder is missing from this installation")
    return found


def alembic_config(engine_or_url: Engine | str) -> AlembicConfig:
    """An Alembic config for our scripts, bound to a database URL or an open engine."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if isinstance(engine_or_url, str):
        cfg.set_main_option("sqlalchemy.url", engine_or_url.replace("%", "%%"))
    else:
        cfg.attributes["engine"] = engine_or_url
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run ``alembic upgrade`` on the engine's database."""
    from alembic import command
    from alembic.util import CommandError

    try:
        command.upgrade(alembic_config(engine), revision)
    except CommandError as exc:
        raise DatabaseNotReadyError(f"migration: {exc}") from exc


def downgrade(engine: Engine, revision: str) -> None:
    """Run ``alembic downgrade`` on the engine's database."""
    from alembic import command
    from alembic.util import CommandError

    try:
        command.downgrade(alembic_config(engine), revision)
    except CommandError as exc:
        raise DatabaseNotReadyError(f"migration: {exc}") from exc


# The newest migration shipped with this version, known without loading Alembic (about 85 ms
# of every command's start): tests/store/test_migrations.py holds it to Alembic's own head.
SCHEMA_HEAD = "0010_return_path"


def head_revision() -> str:
    """The newest migration revision shipped with this version, as Alembic reads it from the
    migration scripts (``SCHEMA_HEAD`` is the same, known in advance)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's migration revision, or ``None`` when it was never migrated: what Alembic
    stamped in ``alembic_version`` (read here without loading Alembic, as every command does
    at start; two rows, branches this project never makes, read as both)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        found = sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    return " + ".join(found) if found else None


def describe(database_url: URL | str) -> str:
    """The database for a message: a SQLite file's path, else host and name (no password)."""
    try:
        url = make_url(database_url)
    except Exception:  # noqa: BLE001 - a message helper never fails
        return ""
    if url.get_backend_name() == "sqlite":
        return repr(url.database) if url.database and url.database != ":memory:" else ""
    return f"{url.host or 'localhost'}/{url.database or ''}"


def check_ready(engine: Engine) -> None:
    """Raise :class:`DatabaseNotReadyError`, saying what to run, unless the schema is current."""
    try:
        current = current_revision(engine)
    except DatabaseError as exc:  # unreachable (OperationalError), or not a database at all
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unknown error"
        what = describe(engine.url)
        raise DatabaseNotReadyError(
            f"cannot open the database{' ' + what if what else ''} ({reason}); check database_url"
        ) from exc
    if current is None:
        tables = inspect(engine).get_table_names()
        what = "is empty" if not tables else "has no weekly_mailer schema"
        raise DatabaseNotReadyError(f"the database {what}: {_RUN_INIT}")
    if current != SCHEMA_HEAD:
        raise DatabaseNotReadyError(
            f"the database is at migration {current}, this version needs {SCHEMA_HEAD}: "
            "run `weekly-mailer db upgrade`"
        )


_RUN_INIT = "run `weekly-mailer init` or `weekly-mailer db upgrade`"


def _sqlite_file_missing(database_url: str) -> bool:
    url = make_url(database_url)
    path = url.database if url.get_backend_name() == "sqlite" else None
    if not path or path == ":memory:" or path.startswith("file:") or "uri" in url.query:
        return False
    return not Path(path).exists()


class Database:
    """An engine and its sessionmaker for one settings object. With ``check``, a SQLite file
    that does not exist is never created (it is an empty database: say what to run)."""

    def __init__(self, settings: Settings, *, check: bool = True) -> None:
        if check and _sqlite_file_missing(settings.database_url):
            raise DatabaseNotReadyError(f"the database is empty: {_RUN_INIT}")
        self.settings = settings
        self.engine = engine_for(settings)
        self.sessions = make_sessionmaker(self.engine)
        if check:
            check_ready(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ping(engine: Engine) -> None:
    """One plain DBAPI round trip (``SELECT 1``); raises when the database does not answer.

    No ORM transaction is opened, so on SQLite no write lock is taken (the health check).
    """
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute("SELECT 1")
            answer = cursor.fetchone()
        finally:
            cursor.close()
    finally:
        raw.close()
    if answer is None or tuple(answer) != (1,):
        raise DatabaseNotReadyError("SELECT 1 did not answer 1")
