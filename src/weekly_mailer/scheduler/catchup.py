"""What a daemon does about the most recent send time when it starts (or becomes leader).

Pure decisions on an injected ``now``: the caller looks at the database and the clock, this
module only says what the rule is.

- The most recent scheduled time already has an issue row (sent, sending, skipped, missed):
  nothing to do; a week is never sent twice.
- It has none and is at most ``grace_hours`` old: catch up now.
- It has none and is older: the week is recorded as ``missed`` and logged as a WARNING; a stale
  issue is never sent days late.
- A database that has never held any issue (a fresh installation) has missed nothing: an old
  send time is not recorded as missed there, only logged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .timing import WeeklySchedule


class StartAction(enum.StrEnum):
    NOTHING = "nothing"  # the week already has its issue, or a fresh install is too late for it
    CATCH_UP = "catch_up"  # send the week's issue now
    MISSED = "missed"  # record the week as missed, loudly


@dataclasses.dataclass(frozen=True, slots=True)
class StartDecision:
    action: StartAction
    fire_time: dt.datetime
    send_week: dt.date
    late_by: dt.timedelta
    reason: str


def decide_on_start(
    schedule: WeeklySchedule,
    *,
    now: dt.datetime,
    grace: dt.timedelta,
    week_recorded: bool,
    fresh_database: bool,
) -> StartDecision:
    """Decide about the most recent send time before ``now`` (see the module docstring)."""
    fire = schedule.previous(now)
    week = schedule.send_week(fire)
    late = now.astimezone(dt.UTC) - fire.astimezone(dt.UTC)
    if week_recorded:
        action, reason = StartAction.NOTHING, f"the week of {week} already has its issue"
    elif late <= grace:
        action, reason = StartAction.CATCH_UP, f"{_hours(late)} late, within the grace window"
    elif fresh_database:
        action, reason = (
            StartAction.NOTHING,
            f"first start: the send of {week} was {_hours(late)} ago, before this installation",
        )
    else:
        action, reason = (
            StartAction.MISSED,
            f"no issue {_hours(late)} after the send time, past the grace window of "
            f"{_hours(grace)} (the daemon was down, or the article could not be read)",
        )
    return StartDecision(action, fire, week, late, reason)


def is_too_late(fire_time: dt.datetime, *, now: dt.datetime, grace: dt.timedelta) -> bool:
    """Whether a send scheduled at ``fire_time`` may no longer go out at ``now``."""
    return now.astimezone(dt.UTC) - fire_time.astimezone(dt.UTC) > grace


def _hours(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
