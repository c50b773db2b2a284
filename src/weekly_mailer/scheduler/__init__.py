"""The daemon's scheduling: weekly fire times, the week claim, catch-up, leader election.

- :mod:`.timing`: the weekly ``CronTrigger`` and the fire-time math (DST-safe wall-clock time).
- :mod:`.catchup`: what to do on start about the most recent send time (pure, clock passed in).
- :mod:`.leader`: ``pg_try_advisory_lock`` leadership on PostgreSQL.
- :mod:`.job`: the weekly job (``issues.prepare``'s look, plan and prepare: pick the article,
  compose, store, enqueue), then a wake-up of the delivery runner.
- :mod:`.daemon`: one process with the scheduler, the web app and the delivery runner
  (``delivery.runner.Runner``).
- :mod:`.observe`: the scheduler's metrics.

The week ledger is :mod:`weekly_mailer.issues.ledger` (one issue row per send week) and the
week's article is chosen by :mod:`weekly_mailer.issues.sources`.
"""

from __future__ import annotations

from weekly_mailer.scheduler.catchup import StartAction, StartDecision, decide_on_start
from weekly_mailer.scheduler.timing import WeeklySchedule, format_fire_time

__all__ = [
    "StartAction",
    "StartDecision",
    "WeeklySchedule",
    "decide_on_start",
    "format_fire_time",
]
