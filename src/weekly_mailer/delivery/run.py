"""Running the delivery worker once until nothing more is due: one issue (``send``, ``demo``,
``issues retry``) or the waiting confirmation e-mails (``subscribers add``,
``subscribers send-confirmations``; ``serve`` runs the same worker in a thread, ``web/outbox.py``,
and ``run`` and ``worker`` deliver them with their own). The caller shows progress through
``on_progress``; nothing here prints."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from weekly_mailer.clock import utcnow
from weekly_mailer.delivery.processes import Crew, Job, deliver_in_processes
from weekly_mailer.delivery.render import IssueRenderers
from weekly_mailer.delivery.worker import Stats, Worker
from weekly_mailer.store.models import DeliveryKind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend


def _run_until_idle(
    sessions: sessionmaker[Session],
    settings: Settings,
    backend: Backend,
    *,
    max_wait: float,
    clock: Callable[[], dt.datetime],
    **scope: Any,
) -> Stats:
    worker = Worker(
        sessions,
        settings,
        backend,
        IssueRenderers(sessions, settings, clock=clock),
        clock=clock,
        **scope,
    )
    return worker.run(until_idle=True, max_wait=max_wait)


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
    processes: int = 1,
    crew: Crew | None = None,
) -> Stats:
    """Deliver one issue's due rows until none is due within ``max_wait`` seconds or ``stop``.

    Deferred rows due later are left for a later run (``worker``, ``run``, ``issues retry``).
    With ``processes`` above 1, that many delivery processes share the work
    (``processes.deliver_in_processes``; see ``processes.process_count``); ``crew``: that many
    started already (``processes.Crew``).
    """
    if crew is not None:
        processes = crew.n
    if processes > 1:
        job = Job({"issue_id": issue_id}, until_idle=True, max_wait=max_wait)
        return deliver_in_processes(
            settings, processes, job, stop=stop, on_progress=on_progress, clock=clock, crew=crew
        )
    return _run_until_idle(
        sessions, settings, backend, max_wait=max_wait, clock=clock,
        issue_id=issue_id, stop=stop, on_progress=on_progress,
    )  # fmt: skip


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
    return _run_until_idle(
        sessions, settings, backend, max_wait=0, clock=clock,
        kind=DeliveryKind.CONFIRMATION.value, stop=stop or threading.Event(),
    )  # fmt: skip
