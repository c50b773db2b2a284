from __future__ import annotations

import datetime as dt

from weekly_mailer.config import Settings
from weekly_mailer.issues.weeks import scheduled_send_at, send_week_for

LA = Settings().zone


def at(y: int, mo: int, d: int, h: int = 12, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=LA)


def test_send_week_is_the_most_recent_wednesday_on_or_before_the_local_date() -> None:
    s = Settings()
    assert send_week_for(at(2026, 11, 25, 9), s) == dt.date(2026, 11, 25)  # Wed morning
    assert send_week_for(at(2026, 11, 25, 19), s) == dt.date(2026, 11, 25)  # Wed evening
    assert send_week_for(at(2026, 11, 26, 10), s) == dt.date(2026, 11, 25)  # Thursday
    assert send_week_for(at(2026, 12, 1, 23, 59), s) == dt.date(2026, 11, 25)  # Tuesday
    assert send_week_for(at(2026, 12, 2, 0, 0), s) == dt.date(2026, 12, 2)


def test_send_week_uses_the_local_date_not_utc() -> None:
    s = Settings()
    # 01:30 UTC Thursday is still Wednesday evening in Los Angeles.
    moment = dt.datetime(2026, 11, 26, 1, 30, tzinfo=dt.UTC)
    assert send_week_for(moment, s) == dt.date(2026, 11, 25)
    # In UTC it is Thursday, but with a Thursday schedule it is that Thursday's week.
    assert send_week_for(moment, s.replace(schedule="thu 09:00", timezone="UTC")) == dt.date(
        2026, 11, 26
    )


def test_scheduled_send_is_wall_clock_across_dst() -> None:
    s = Settings()
    summer = scheduled_send_at(dt.date(2026, 7, 1), s)
    winter = scheduled_send_at(dt.date(2026, 12, 2), s)
    assert summer.astimezone(dt.UTC) == dt.datetime(2026, 7, 2, 1, 0, tzinfo=dt.UTC)
    assert winter.astimezone(dt.UTC) == dt.datetime(2026, 12, 3, 2, 0, tzinfo=dt.UTC)
