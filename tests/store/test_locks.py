"""Session-level advisory locks: held per connection, until released or the connection closes."""

from __future__ import annotations

import pytest
from sqlalchemy.pool import NullPool

from weekly_mailer.store.db import make_engine
from weekly_mailer.store.locks import check_connection, release_advisory_lock, try_advisory_lock

pytestmark = pytest.mark.postgres

KEY = 0x7E57_10C5


def test_one_connection_holds_the_lock_until_it_lets_go(pg_url: str) -> None:
    engine = make_engine(pg_url, poolclass=NullPool)  # a closed connection really closes
    try:
        with (
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as a,
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as b,
        ):
            assert try_advisory_lock(a, KEY) is True
            assert try_advisory_lock(b, KEY) is False
            check_connection(a)
            assert release_advisory_lock(b, KEY) is False  # not b's to give back
            assert release_advisory_lock(a, KEY) is True
            assert try_advisory_lock(b, KEY) is True
            a.close()  # closing a connection that holds nothing changes nothing
            assert try_advisory_lock(b, KEY) is True  # re-entrant for its holder
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            assert try_advisory_lock(c, KEY) is True  # b closed: its locks went with it
    finally:
        engine.dispose()
