"""Schedule math: Wednesday 18:00 in Los Angeles, across every DST change of 2026-2030."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import pytest
from click.testing import CliRunner

from weekly_mailer.cli import main
from weekly_mailer.config import Settings
from weekly_mailer.errors import ConfigError
from weekly_mailer.scheduler import WeeklySchedule, format_fire_time

LA = zoneinfo.ZoneInfo("America/Los_Angeles")
UTC = dt.UTC


def wednesdays(first: dt.date, last: dt.date) -> list[dt.date]:
    day = first + dt.timedelta(days=(2 - first.weekday()) % 7)
    out = []
    while day <= last:
        out.append(day)
        day += dt.timedelta(days=7)
    return out


def test_fire_times_2026_to_2030_are_wednesday_1800_in_los_angeles() -> None:
    weekly = WeeklySchedule.from_settings(Settings())
    start = dt.datetime(2026, 1, 1, tzinfo=LA)
    end = dt.datetime(2031, 1, 1, tzinfo=LA)
    fires = []
    moment = start
    while True:
        moment = weekly.next_after(moment)
        if moment >= end:
            break
        fires.append(moment)

    # Every Wednesday of the five years, none missing, none extra.
    expected_days = wednesdays(dt.date(2026, 1, 1), dt.date(2030, 12, 31))
    assert len(fires) == len(expected_days) == 260
    offsets = set()
    for fire, day in zip(fires, expected_days, strict=True):
        local = fire.astimezone(LA)
        utc = fire.astimezone(UTC)
        assert (local.date(), local.hour, local.minute, local.second) == (day, 18, 0, 0)
        assert local.strftime("%A") == "Wednesday"
        # 18:00 PDT = 01:00 UTC Thursday, 18:00 PST = 02:00 UTC Thursday.
        assert utc.strftime("%A") == "Thursday"
        assert utc.date() == day + dt.timedelta(days=1)
        assert (utc.hour, utc.minute) == ((1, 0) if local.tzname() == "PDT" else (2, 0))
        assert utc == dt.datetime(day.year, day.month, day.day, 18, tzinfo=LA).astimezone(UTC)
        offsets.add(local.utcoffset())
    assert offsets == {dt.timedelta(hours=-7), dt.timedelta(hours=-8)}

    # Every DST change falls between two fires: 10 changes in five years, and only there the
    # gap between fires is 7 days plus or minus one hour.
    changes = 0
    for before, after in zip(fires, fires[1:], strict=False):
        gap = after.astimezone(UTC) - before.astimezone(UTC)  # same tzinfo: wall-clock diff
        if before.astimezone(LA).utcoffset() == after.astimezone(LA).utcoffset():
            assert gap == dt.timedelta(days=7)
        else:
            changes += 1
            assert gap in (dt.timedelta(days=7, hours=1), dt.timedelta(days=7, hours=-1))
    assert changes == 10


@pytest.mark.parametrize(
    ("before", "expected_utc"),
    [
        # The Wednesdays right around each 2026 change (Mar 8 and Nov 1).
        (dt.datetime(2026, 3, 4, 12, tzinfo=UTC), dt.datetime(2026, 3, 5, 2, tzinfo=UTC)),
        (dt.datetime(2026, 3, 8, 12, tzinfo=UTC), dt.datetime(2026, 3, 12, 1, tzinfo=UTC)),
        (dt.datetime(2026, 10, 28, 12, tzinfo=UTC), dt.datetime(2026, 10, 29, 1, tzinfo=UTC)),
        (dt.datetime(2026, 11, 1, 12, tzinfo=UTC), dt.datetime(2026, 11, 5, 2, tzinfo=UTC)),
    ],
)
def test_next_fire_across_dst(before: dt.datetime, expected_utc: dt.datetime) -> None:
    weekly = WeeklySchedule.from_settings(Settings())
    assert weekly.next_after(before) == expected_utc


def test_next_after_is_strict_and_previous_is_inclusive() -> None:
    weekly = WeeklySchedule.from_settings(Settings())
    fire = dt.datetime(2026, 11, 25, 18, tzinfo=LA)
    assert weekly.next_after(fire) == dt.datetime(2026, 12, 2, 18, tzinfo=LA)
    assert weekly.next_after(fire - dt.timedelta(microseconds=1)) == fire
    assert weekly.previous(fire) == fire
    assert weekly.previous(fire - dt.timedelta(seconds=1)) == dt.datetime(
        2026, 11, 18, 18, tzinfo=LA
    )
    # Across the autumn change: the Wednesday after it, asked from Thursday.
    assert weekly.previous(dt.datetime(2026, 11, 5, 3, tzinfo=UTC)) == dt.datetime(
        2026, 11, 4, 18, tzinfo=LA
    )
    assert weekly.send_week(fire) == dt.date(2026, 11, 25)
    # The send week is the local date, not the UTC date (which is Thursday).
    assert fire.astimezone(UTC).date() == dt.date(2026, 11, 26)


def test_naive_datetimes_are_refused() -> None:
    weekly = WeeklySchedule.from_settings(Settings())
    with pytest.raises(ValueError, match="aware"):
        weekly.next_after(dt.datetime(2026, 1, 1))


def test_other_schedules_and_zones() -> None:
    weekly = WeeklySchedule.from_settings(Settings(schedule="mon 07:30", timezone="Europe/Paris"))
    fire = weekly.next_after(dt.datetime(2026, 3, 26, tzinfo=UTC))  # a Thursday
    assert fire == dt.datetime(2026, 3, 30, 7, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    assert fire.astimezone(UTC) == dt.datetime(2026, 3, 30, 5, 30, tzinfo=UTC)  # CEST


def test_seconds_form_for_precise_schedules() -> None:
    weekly = WeeklySchedule.from_settings(Settings(schedule="tue 14:51:07"))
    fire = weekly.next_after(dt.datetime(2026, 11, 24, 14, 51, tzinfo=LA))
    assert fire == dt.datetime(2026, 11, 24, 14, 51, 7, tzinfo=LA)
    with pytest.raises(ConfigError, match="schedule: 'tue 14:51:77' is not a valid time of day"):
        Settings().replace(schedule="tue 14:51:77")


def test_format_shows_local_offset_then_utc() -> None:
    winter = dt.datetime(2026, 11, 25, 18, tzinfo=LA)
    summer = dt.datetime(2026, 7, 1, 18, tzinfo=LA)
    assert format_fire_time(winter, LA) == (
        "Wed 2026-11-25 18:00 PST (UTC-08:00)  Thu 2026-11-26 02:00 UTC"
    )
    assert format_fire_time(summer, LA) == (
        "Wed 2026-07-01 18:00 PDT (UTC-07:00)  Thu 2026-07-02 01:00 UTC"
    )


def test_schedule_command_prints_next_send_times(runner: CliRunner, workdir: Path) -> None:
    result = runner.invoke(main, ["schedule", "--count", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    now = dt.datetime.now(UTC)
    previous = None
    for line in lines:
        local_part, utc_part = line.split("  ")
        assert local_part.startswith("Wed ") and " 18:00 P" in local_part
        assert "(UTC-07:00)" in local_part or "(UTC-08:00)" in local_part
        assert utc_part.startswith("Thu ") and utc_part.endswith(" UTC")
        when = dt.datetime.strptime(utc_part, "%a %Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
        assert when > now
        if previous is not None:
            assert (
                dt.timedelta(days=6, hours=23) <= when - previous <= dt.timedelta(days=7, hours=1)
            )
        previous = when


def test_schedule_command_with_configured_schedule(runner: CliRunner, workdir: Path) -> None:
    result = runner.invoke(
        main,
        ["schedule", "-n", "1"],
        env={"WEEKLY_MAILER_SCHEDULE": "fri 09:15", "WEEKLY_MAILER_TIMEZONE": "Asia/Tokyo"},
    )
    assert result.exit_code == 0, result.output
    assert " 09:15 JST (UTC+09:00)  " in result.output
    assert result.output.startswith("Fri ")
    assert result.output.rstrip().endswith(" 00:15 UTC")


def test_schedule_command_rejects_a_bad_schedule(runner: CliRunner, workdir: Path) -> None:
    result = runner.invoke(main, ["schedule"], env={"WEEKLY_MAILER_SCHEDULE": "someday"})
    assert result.exit_code == 2
    assert result.output == "Error: schedule: 'someday' is not like 'wed 18:00'\n"


def test_times_inside_a_dst_change_fire_once_a_week() -> None:
    # 02:30 does not exist on 2026-03-08 (clocks jump 02:00 -> 03:00): it fires at 03:30 PDT.
    spring = WeeklySchedule.from_settings(Settings(schedule="sun 02:30"))
    fires = spring.fire_times(dt.datetime(2026, 2, 25, tzinfo=UTC), 3)
    assert [f.astimezone(LA).date() for f in fires] == [
        dt.date(2026, 3, 1),
        dt.date(2026, 3, 8),
        dt.date(2026, 3, 15),
    ]
    assert fires[1] == dt.datetime(2026, 3, 8, 10, 30, tzinfo=UTC)
    # 01:30 happens twice on 2026-11-01 (clocks go back 02:00 -> 01:00): the first one only.
    autumn = WeeklySchedule.from_settings(Settings(schedule="sun 01:30"))
    fires = autumn.fire_times(dt.datetime(2026, 10, 20, tzinfo=UTC), 3)
    assert fires == [
        dt.datetime(2026, 10, 25, 8, 30, tzinfo=UTC),
        dt.datetime(2026, 11, 1, 8, 30, tzinfo=UTC),  # 01:30 PDT
        dt.datetime(2026, 11, 8, 9, 30, tzinfo=UTC),  # 01:30 PST
    ]
    # Between the two 01:30s, the most recent send is still the first one.
    assert autumn.previous(dt.datetime(2026, 11, 1, 9, 45, tzinfo=UTC)) == fires[1]
