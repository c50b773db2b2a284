"""Work to do once a session's transaction has committed, and never if it rolls back.

Metrics count what the ledger holds: a result is counted when the transaction that wrote it
commits, so a rolled-back batch (a lost lease, a database error) counts nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_KEY = "weekly_mailer.after_commit"


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Call ``fn`` (no SQL in it) when ``session``'s current transaction commits."""
    session.info.setdefault(_KEY, []).append(fn)


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    for fn in session.info.pop(_KEY, []):
        try:
            fn()
        except Exception:  # noqa: BLE001 - what was committed stays committed
            log.exception("an after-commit hook failed")


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_KEY, None)
