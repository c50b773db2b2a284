"""Delivering the confirmation e-mails waiting in the outbox now, once (``subscribers add``,
``subscribers send-confirmations``). ``serve`` runs the same worker in a thread
(``web/outbox.py``); ``run`` and ``worker`` deliver them with their own worker."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer.clock import utcnow
from weekly_mailer.delivery.render import IssueRenderers
from weekly_mailer.delivery.worker import Stats, Worker
from weekly_mailer.store.models import DeliveryKind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend


def deliver_confirmations(
    sessions: sessionmaker[Session],
    settings: Settings,
    backend: Backend,
    *,
    stop: threading.Event | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> Stats:
    """Try every due confirmation row once; rows deferred to later are left for a later run.

    Raises ``BackendUnavailableError`` (the server is down) after handing the rows back.
    """
    worker = Worker(
        sessions,
        settings,
        backend,
        IssueRenderers(sessions, settings, clock=clock),
        kind=DeliveryKind.CONFIRMATION.value,
        stop=stop or threading.Event(),
        clock=clock,
    )
    return worker.run(until_idle=True, max_wait=0)
