"""Running the delivery worker for one issue until nothing more is due (``send``, ``demo``,
``issues retry``). The caller shows progress through ``on_progress``; nothing here prints."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer.clock import utcnow
from weekly_mailer.delivery.render import IssueRenderers
from weekly_mailer.delivery.worker import Stats, Worker

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend


def deliver_issue(
    sessions: sessionmaker[Session],
    settings: Settings,
    backend: Backend,
    issue_id: int,
    *,
    stop: threading.Event,
    max_wait: float = 60.0,
    on_progress: Callable[[Stats], None] | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> Stats:
    """Deliver one issue's due rows until none is due within ``max_wait`` seconds or ``stop``.

    Deferred rows due later are left for a later run (``worker``, ``run``, ``issues retry``).
    """
    worker = Worker(
        sessions,
        settings,
        backend,
        IssueRenderers(sessions, settings, clock=clock),
        issue_id=issue_id,
        stop=stop,
        clock=clock,
        on_progress=on_progress,
    )
    return worker.run(until_idle=True, max_wait=max_wait)
