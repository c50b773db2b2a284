"""The scheduler's gauges for the metrics: the next fire time, the last run's outcome, leader."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from weekly_mailer import metrics

if TYPE_CHECKING:
    from weekly_mailer.scheduler.catchup import StartAction
    from weekly_mailer.scheduler.job import WeeklyJob

log = logging.getLogger(__name__)


def outcome_of(action: StartAction | None) -> str:
    """``nothing``, ``catch_up`` or ``missed``; ``standby`` when another daemon leads."""
    return "standby" if action is None else action.value


def note_run(job: WeeklyJob, outcome: str, *, leader: bool | None) -> None:
    """One run of the weekly job ended with ``outcome`` (``error`` when it raised)."""
    try:
        now = job.clock()
        next_fire = job.schedule.next_after(now).timestamp()
        metrics.note_job(outcome, at=now.timestamp(), next_fire=next_fire, leader=leader)
    except Exception:  # noqa: BLE001 - metrics never stop the daemon
        log.exception("scheduler metrics")
