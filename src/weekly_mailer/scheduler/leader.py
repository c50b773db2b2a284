"""Leader election: on PostgreSQL one daemon holds an advisory lock and runs the weekly job.

The lock lives on a dedicated connection held for the daemon's lifetime; it is released when
the connection closes, so a daemon that dies hands leadership on. The others stand by and try
again. On SQLite every daemon is its own leader: there the unique ``Issue.send_week`` alone
keeps one issue per week (it does on PostgreSQL too; the lock only saves duplicate work).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.exc import DBAPIError

from weekly_mailer.store.locks import check_connection, release_advisory_lock, try_advisory_lock

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

# A fixed 64-bit key for pg_try_advisory_lock: "weekly_mailer scheduler".
ADVISORY_LOCK_KEY = 0x5745454B4C59_01


class Leadership(Protocol):
    """Whether this daemon may run the weekly job now."""

    def acquire(self) -> bool:
        """Try to become (or check that we still are) the leader; never blocks."""
        ...

    def release(self) -> None:
        """Give leadership up. Safe to call twice."""
        ...


class AlwaysLeader:
    """SQLite: no lock to take; the database's unique send week does the job."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


class AdvisoryLockLeader:
    """``pg_try_advisory_lock`` on a dedicated connection of ``engine``."""

    def __init__(self, engine: Engine, *, key: int = ADVISORY_LOCK_KEY) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None
        self._held = False
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT"
                    )
                if self._held:
                    check_connection(self._conn)  # still connected, still ours
                    return True
                self._held = try_advisory_lock(self._conn, self.key)
                return self._held
            except DBAPIError as exc:
                log.warning("leader lock: lost the database connection (%s)", exc.orig)
                self._drop(broken=True)
                return False

    def release(self) -> None:
        with self._lock:
            if self._conn is not None and self._held:
                try:
                    release_advisory_lock(self._conn, self.key)
                except DBAPIError:
                    pass
            self._drop()

    def _drop(self, *, broken: bool = False) -> None:
        self._held = False
        if self._conn is not None:
            try:
                if broken:
                    self._conn.invalidate()  # closes the DBAPI connection, not back to the pool
                self._conn.close()
            except DBAPIError:
                pass
            self._conn = None


def leadership_for(engine: Engine) -> Leadership:
    """The advisory lock on PostgreSQL, no lock elsewhere."""
    if engine.dialect.name == "postgresql":
        return AdvisoryLockLeader(engine)
    return AlwaysLeader()
