"""Schedule math: the weekly cron trigger, fire times, and the send week a fire time names.

One definition of "when": an APScheduler 3.x ``CronTrigger`` in the configured zone. Wall-clock
time in that zone is what the schedule means, so 'wed 18:00' in America/Los_Angeles fires at
18:00 PDT in summer and 18:00 PST in winter (01:00 or 02:00 UTC on Thursday). Every other
question (the next N sends, the most recent one) asks the same trigger.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from typing import TYPE_CHECKING

from apscheduler.triggers.cron import CronTrigger

from weekly_mailer.config import DAYS, parse_schedule_seconds
from weekly_mailer.issues.weeks import send_week_in

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

# Longer than any week between two fire times, DST changes included.
_LOOKBACK = dt.timedelta(days=8)
# Longer than any DST shift: a repeated wall-clock time lies within this of its first instance.
_FOLD = dt.timedelta(hours=3)


@dataclasses.dataclass(frozen=True, slots=True)
class WeeklySchedule:
    """A weekly wall-clock time in a zone: weekday (Monday = 0), hour, minute, second."""

    weekday: int
    hour: int
    minute: int
    second: int
    zone: zoneinfo.ZoneInfo

    @classmethod
    def from_settings(cls, settings: Settings) -> WeeklySchedule:
        weekday, hour, minute, second = parse_schedule_seconds(settings.schedule)
        return cls(weekday, hour, minute, second, settings.zone)

    def trigger(self) -> CronTrigger:
        """The APScheduler trigger that fires at this time every week."""
        return CronTrigger(
            day_of_week=DAYS[self.weekday],
            hour=self.hour,
            minute=self.minute,
            second=self.second,
            timezone=self.zone,
        )

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first fire time strictly after ``moment``, in UTC.

        Results are UTC on purpose: Python compares and subtracts two datetimes that share a
        ``ZoneInfo`` by wall-clock time, which is wrong across a DST change.
        """
        _check_aware(moment)
        trigger = self.trigger()
        fire = self._raw_next(trigger, moment)
        # A wall-clock time inside the autumn fold (01:30 on the night the clocks go back)
        # happens twice; the week's send is the first of the two.
        while self._is_repeat(trigger, fire):
            fire = self._raw_next(trigger, fire)
        return fire

    def _raw_next(self, trigger: CronTrigger, moment: dt.datetime) -> dt.datetime:
        start = moment.astimezone(dt.UTC) + dt.timedelta(microseconds=1)
        fire = trigger.get_next_fire_time(None, start.astimezone(self.zone))
        assert isinstance(fire, dt.datetime)
        return fire.astimezone(dt.UTC)

    def _is_repeat(self, trigger: CronTrigger, fire: dt.datetime) -> bool:
        earlier = self._raw_next(trigger, fire - _FOLD)
        return earlier < fire and self.send_week(earlier) == self.send_week(fire)

    def fire_times(self, after: dt.datetime, count: int) -> list[dt.datetime]:
        """The next ``count`` fire times strictly after ``after``."""
        times: list[dt.datetime] = []
        moment = after
        for _ in range(count):
            moment = self.next_after(moment)
            times.append(moment)
        return times

    def previous(self, now: dt.datetime) -> dt.datetime:
        """The most recent fire time at or before ``now``, in UTC."""
        _check_aware(now)
        now = now.astimezone(dt.UTC)
        moment = now - _LOOKBACK
        latest = self.next_after(moment)
        while True:
            following = self.next_after(latest)
            if following > now:
                return latest
            latest = following

    def send_week(self, fire_time: dt.datetime) -> dt.date:
        """The send week a moment belongs to: :func:`weekly_mailer.issues.weeks.send_week_for`,
        the one week rule (for a fire time, the local date of the scheduled send)."""
        _check_aware(fire_time)
        return send_week_in(fire_time, weekday=self.weekday, zone=self.zone)

    def describe(self) -> str:
        seconds = f":{self.second:02d}" if self.second else ""
        return f"{DAYS[self.weekday]} {self.hour:02d}:{self.minute:02d}{seconds} {self.zone.key}"


def _check_aware(moment: dt.datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("schedule math needs an aware datetime")


def format_fire_time(fire: dt.datetime, zone: zoneinfo.ZoneInfo) -> str:
    """One line for ``schedule``: local time, zone and UTC offset, then the same moment in UTC.

    ``Wed 2026-11-25 18:00 PST (UTC-08:00)  Thu 2026-11-26 02:00 UTC``
    """
    local = fire.astimezone(zone)
    utc = fire.astimezone(dt.UTC)
    clock = "%H:%M:%S" if local.second else "%H:%M"
    offset = local.utcoffset() or dt.timedelta(0)
    sign = "-" if offset < dt.timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return (
        f"{local.strftime('%a %Y-%m-%d ' + clock)} {local.tzname()} "
        f"(UTC{sign}{minutes // 60:02d}:{minutes % 60:02d})  "
        f"{utc.strftime('%a %Y-%m-%d ' + clock)} UTC"
    )
