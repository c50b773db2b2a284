"""Delivering once until nothing more is due, through the one runner (``runner.Runner``): one
issue (``send``, ``demo``, ``issues retry``) or the waiting confirmation e-mails (``subscribers
add``, ``subscribers send-confirmations``). ``serve``, ``run`` and ``worker`` run the same
runner for ever. The caller shows progress through ``on_progress`` and outages through
``on_outage``; nothing here prints."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer.clock import utcnow
from weekly_mailer.delivery.runner import Runner
from weekly_mailer.store.models import DeliveryKind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend
    from weekly_mailer.delivery.policy import Stats
    from weekly_mailer.delivery.processes import Crew


def deliver_issue(
    sessions: sessionmaker[Session],
    settings: Settings,
    backend: Backend,
    issue_id: int,
    *,
    stop: threading.Event,
    max_wait: float = 60.0,
    on_progress: Callable[[Stats], None] | None = None,
    on_outage: Callable[[str], None] | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    processes: int = 1,
    crew: Crew | None = None,
) -> Stats:
    """Deliver one issue's due rows until none is due within ``max_wait`` seconds or ``stop``.

    Deferred rows due later are left for a later run (``worker``, ``run``, ``issues retry``).
    With ``processes`` above 1, that many delivery processes share the work (see
    ``processes.process_count``); ``crew``: that many started already (``processes.Crew``).
    """
    runner = Runner(
        settings, sessions, backend, scope={"issue_id": issue_id}, processes=processes,
        crew=crew, stop=stop, clock=clock, on_progress=on_progress, on_outage=on_outage,
    )  # fmt: skip
    return runner.run(until_idle=True, max_wait=max_wait)


def fold_journals(sessions: sessionmaker[Session], settings: Settings) -> int:
    """Record as sent what the journals of dead delivery processes say the server accepted
    (``journal.fold``; every worker does it too when it starts), and hand back at once what
    else they held; returns how many rows became sent."""
    from weekly_mailer.delivery.journal import fold, journal_dir
    from weekly_mailer.delivery.results import ResultEffects
    from weekly_mailer.store.outbox.port import SqlOutbox

    port = SqlOutbox(sessions, owner="", lease_seconds=settings.lease_seconds,
                     effects=ResultEffects(settings))  # fmt: skip
    return fold(journal_dir(settings), port.accept, release=port.hand_back)


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
    runner = Runner(
        settings, sessions, backend, scope={"kind": DeliveryKind.CONFIRMATION.value},
        stop=stop or threading.Event(), clock=clock,
    )  # fmt: skip
    return runner.run(until_idle=True, max_wait=0)
