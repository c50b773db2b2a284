"""What a daemon does about the most recent send time when it starts (or becomes leader).

Pure decisions on an injected ``now``: the caller looks at the database and the clock, this
module only says what the rule is.

- The most recent scheduled time already has an issue row (sent, sending, skipped, missed):
  nothing to do; a week is never sent twice.
- It has none and is at most ``grace_hours`` old: catch up now.
- It has none and is older: the week is recorded as ``missed`` and logged as a WARNING; a stale
  issue is never sent days late.
- A database that has never held any issue (a fresh installation) has missed nothing: a send
  time that passed before this daemon started (``running_since``) is neither caught up nor
  recorded, only logged at INFO; the first issue goes out at the next send time. (A fresh
  install started a few minutes after a Wednesday send must not mail everyone at once.)
- Weeks between the last recorded week and the most recent one (the daemon was down for
  several weeks) are each recorded as ``missed`` (:func:`gap_weeks`), at most
  ``MAX_GAP_WEEKS`` back, and never on a fresh installation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weekly_mailer.scheduler.timing import WeeklySchedule


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


# How many weeks before the most recent send time a returning daemon records as missed.
MAX_GAP_WEEKS = 8


def decide_on_start(
    schedule: WeeklySchedule,
    *,
    now: dt.datetime,
    grace: dt.timedelta,
    week_recorded: bool,
    fresh_database: bool,
    running_since: dt.datetime | None = None,
) -> StartDecision:
    """Decide about the most recent send time before ``now`` (see the module docstring).

    ``running_since`` is when this daemon started; ``None`` counts as "just now".
    """
    fire = schedule.previous(now)
    week = schedule.send_week(fire)
    late = now.astimezone(dt.UTC) - fire.astimezone(dt.UTC)
    before_start = running_since is None or fire.astimezone(dt.UTC) < running_since.astimezone(
        dt.UTC
    )
    if week_recorded:
        action, reason = StartAction.NOTHING, f"the week of {week} already has its issue"
    elif fresh_database and before_start:
        action, reason = (
            StartAction.NOTHING,
            f"first start: the send of {week} was due before the daemon first ran, so it is "
            "not caught up; the first issue goes out at the next send time",
        )
    elif late <= grace:
        action, reason = StartAction.CATCH_UP, f"{_hours(late)} late, within the grace window"
    else:
        action, reason = (
            StartAction.MISSED,
            f"no issue {_hours(late)} after the send time, past the grace window of "
            f"{_hours(grace)} (the daemon was down, or the article could not be read)",
        )
    return StartDecision(action, fire, week, late, reason)


def gap_weeks(
    schedule: WeeklySchedule,
    *,
    fire_time: dt.datetime,
    last_recorded: dt.date | None,
    now: dt.datetime,
    grace: dt.timedelta,
) -> list[tuple[dt.datetime, dt.date]]:
    """The send times before ``fire_time`` whose weeks have no row and can no longer go out.

    Those after the ``last_recorded`` week, oldest first, at most ``MAX_GAP_WEEKS``; none when
    nothing was ever recorded (a fresh installation has missed nothing).
    """
    if last_recorded is None:
        return []
    gaps: list[tuple[dt.datetime, dt.date]] = []
    fire = fire_time
    for _ in range(MAX_GAP_WEEKS):
        fire = schedule.previous(fire - dt.timedelta(microseconds=1))
        week = schedule.send_week(fire)
        if week <= last_recorded:
            break
        if is_too_late(fire, now=now, grace=grace):
            gaps.append((fire, week))
    return gaps[::-1]


def is_too_late(fire_time: dt.datetime, *, now: dt.datetime, grace: dt.timedelta) -> bool:
    """Whether a send scheduled at ``fire_time`` may no longer go out at ``now``."""
    return now.astimezone(dt.UTC) - fire_time.astimezone(dt.UTC) > grace


def _hours(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
