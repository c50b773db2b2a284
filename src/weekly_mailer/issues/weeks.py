"""Send weeks: which weekly issue a moment belongs to, and when that week's send is due.

A send week is named by a date: the local date (in ``settings.timezone``) of the week's scheduled
send day (``settings.schedule``, e.g. ``'wed 18:00'``). A moment belongs to the send week of the
most recent scheduled weekday on or before its local date, so a manual ``send`` on Thursday
belongs to the Wednesday just passed, and one on Wednesday morning to that same Wednesday.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import TYPE_CHECKING

from weekly_mailer.config import parse_schedule

if TYPE_CHECKING:
    from weekly_mailer.config import Settings


def send_week_for(moment: dt.datetime, settings: Settings) -> dt.date:
    """The send week (a local date on the scheduled weekday) that ``moment`` belongs to.

    The one week rule: ``send``, ``demo`` and the daemon's weekly job (through
    :meth:`weekly_mailer.scheduler.timing.WeeklySchedule.send_week`) all ask it.
    """
    weekday, _hour, _minute = parse_schedule(settings.schedule)
    return send_week_in(moment, weekday=weekday, zone=settings.zone)


def send_week_in(moment: dt.datetime, *, weekday: int, zone: zoneinfo.ZoneInfo) -> dt.date:
    """:func:`send_week_for` given the schedule's weekday (Monday = 0) and zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("send_week_for needs an aware datetime")
    local = moment.astimezone(zone).date()
    return local - dt.timedelta(days=(local.weekday() - weekday) % 7)


def scheduled_send_at(send_week: dt.date, settings: Settings) -> dt.datetime:
    """The aware local moment of the scheduled send of ``send_week`` (wall-clock, DST-safe)."""
    _weekday, hour, minute = parse_schedule(settings.schedule)
    naive = dt.datetime.combine(send_week, dt.time(hour, minute))
    # fold=0: in an ambiguous hour take the first occurrence; a skipped hour maps forward.
    aware = naive.replace(tzinfo=settings.zone)
    return aware.astimezone(dt.UTC).astimezone(settings.zone)


def next_scheduled_send(now: dt.datetime, settings: Settings) -> dt.datetime:
    """The first scheduled weekly send after ``now`` (local, aware): what the daemon does next."""
    week = send_week_for(now, settings)
    at = scheduled_send_at(week, settings)
    return at if at > now else scheduled_send_at(week + dt.timedelta(days=7), settings)


def week_note(week: dt.date, now: dt.datetime, settings: Settings) -> str:
    """For a manual ``send``: which week's issue this is, and when the daemon sends next. On a
    Sunday the issue is the one of the week that began the Wednesday before (the one week rule),
    while the next weekly send is three days away: both are said at the moment it matters."""
    due = scheduled_send_at(week, settings)
    nxt = next_scheduled_send(now, settings)
    late = " (its scheduled send has passed)" if due <= now else ""
    return (
        f"This is the issue of the week of {week:%a %Y-%m-%d}{late}; the daemon's next weekly "
        f"send (`weekly-mailer run`) is {nxt:%a %Y-%m-%d %H:%M %Z}, for the week of "
        f"{nxt:%Y-%m-%d}."
    )
