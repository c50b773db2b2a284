"""The daemon's scheduling: weekly fire times, the week claim, catch-up, leader election.

- :mod:`.timing`: the weekly ``CronTrigger`` and the fire-time math (DST-safe wall-clock time).
- :mod:`.catchup`: what to do on start about the most recent send time (pure, clock passed in).
- the week ledger (:mod:`weekly_mailer.issues.ledger`): one issue row per send week.
- :mod:`.sources`: which article a week takes from ``article_source`` (feed, folder, file).
- :mod:`.leader`: ``pg_try_advisory_lock`` leadership on PostgreSQL.
- :mod:`.job`: the weekly job (resolve the article, compose, store, enqueue, deliver).
- :mod:`.daemon`: one process with the scheduler, the web app and a delivery worker.
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
