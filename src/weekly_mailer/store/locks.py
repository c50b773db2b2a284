"""Session-level PostgreSQL advisory locks on a caller's connection.

The lock belongs to the database session (the connection), not to a transaction: it is held
until :func:`release_advisory_lock` or until the connection closes. Use an ``AUTOCOMMIT``
connection so that no transaction stays open while the lock is held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def try_advisory_lock(conn: Connection, key: int) -> bool:
    """Take the lock ``key`` for this connection if it is free; never blocks."""
    return bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())


def release_advisory_lock(conn: Connection, key: int) -> bool:
    """Give the lock ``key`` back; ``False`` when this connection did not hold it."""
    return bool(conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key}).scalar())


def check_connection(conn: Connection) -> None:
    """One round trip; raises :class:`sqlalchemy.exc.DBAPIError` when the connection is gone."""
    conn.execute(text("SELECT 1"))
