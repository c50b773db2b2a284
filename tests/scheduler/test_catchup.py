"""Catch-up and missed-week decisions with an injected clock (no sleeping until Wednesday)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from weekly_mailer.config import Settings
from weekly_mailer.scheduler import StartAction, WeeklySchedule, decide_on_start
from weekly_mailer.scheduler.catchup import MAX_GAP_WEEKS, gap_weeks, is_too_late

LA = zoneinfo.ZoneInfo("America/Los_Angeles")
GRACE = dt.timedelta(hours=12)
WEEKLY = WeeklySchedule.from_settings(Settings())
WED = dt.datetime(2026, 11, 25, 18, tzinfo=LA)  # a Wednesday send, PST


def decide(now: dt.datetime, *, recorded: bool = False, fresh: bool = False):  # type: ignore[no-untyped-def]
    return decide_on_start(
        WEEKLY, now=now, grace=GRACE, week_recorded=recorded, fresh_database=fresh
    )


@pytest.mark.parametrize(
    ("late", "action"),
    [
        (dt.timedelta(0), StartAction.CATCH_UP),
        (dt.timedelta(minutes=5), StartAction.CATCH_UP),
        (dt.timedelta(hours=12), StartAction.CATCH_UP),  # the edge is inside the window
        (dt.timedelta(hours=12, seconds=1), StartAction.MISSED),
        (dt.timedelta(days=3), StartAction.MISSED),
    ],
)
def test_start_after_a_send_time_without_an_issue(late: dt.timedelta, action: StartAction) -> None:
    decision = decide(WED + late)
    assert decision.action is action
    assert decision.fire_time == WED
    assert decision.send_week == dt.date(2026, 11, 25)
    assert decision.late_by == late


def test_a_week_that_has_its_issue_is_never_sent_again() -> None:
    for late in (dt.timedelta(minutes=1), dt.timedelta(days=2)):
        assert decide(WED + late, recorded=True).action is StartAction.NOTHING


def test_start_before_the_send_time_looks_at_last_week() -> None:
    decision = decide(WED - dt.timedelta(hours=1))
    assert decision.send_week == dt.date(2026, 11, 18)
    assert decision.action is StartAction.MISSED
    assert "past the grace window of 12h00m" in decision.reason


def test_a_fresh_database_does_not_catch_up_a_send_due_before_it_first_ran() -> None:
    assert decide(WED + dt.timedelta(days=1), fresh=True).action is StartAction.NOTHING
    # Started 10 minutes after the send time, well within the grace window: still nothing.
    late = decide(WED + dt.timedelta(minutes=10), fresh=True)
    assert late.action is StartAction.NOTHING
    assert "before the daemon first ran" in late.reason
    assert "the first issue goes out at the next send time" in late.reason
    started = WED + dt.timedelta(minutes=9)
    assert (
        decide_on_start(
            WEEKLY,
            now=WED + dt.timedelta(minutes=10),
            grace=GRACE,
            week_recorded=False,
            fresh_database=True,
            running_since=started,
        ).action
        is StartAction.NOTHING
    )
    # Running since before the send time: the send time itself sends the first issue.
    at_send = decide_on_start(
        WEEKLY,
        now=WED + dt.timedelta(seconds=1),
        grace=GRACE,
        week_recorded=False,
        fresh_database=True,
        running_since=WED - dt.timedelta(hours=3),
    )
    assert at_send.action is StartAction.CATCH_UP


def test_gap_weeks_after_long_downtime() -> None:
    fire = WED + dt.timedelta(weeks=3)
    now = fire + dt.timedelta(hours=1)
    gaps = gap_weeks(WEEKLY, fire_time=fire, last_recorded=dt.date(2026, 11, 18), now=now,
                     grace=GRACE)  # fmt: skip
    assert [w for _, w in gaps] == [
        dt.date(2026, 11, 25),
        dt.date(2026, 12, 2),
        dt.date(2026, 12, 9),
    ]
    assert gaps[0][0] == WED
    # Bounded, and nothing at all on a fresh installation or right after the last week.
    far = gap_weeks(WEEKLY, fire_time=fire, last_recorded=dt.date(2025, 1, 1), now=now, grace=GRACE)
    assert len(far) == MAX_GAP_WEEKS == 8
    assert far[-1][1] == dt.date(2026, 12, 9)
    assert gap_weeks(WEEKLY, fire_time=fire, last_recorded=None, now=now, grace=GRACE) == []
    assert (
        gap_weeks(WEEKLY, fire_time=fire, last_recorded=dt.date(2026, 12, 9), now=now, grace=GRACE)
        == []
    )


def test_grace_window_measured_in_real_hours_across_dst() -> None:
    # Wednesday 2026-03-04 18:00 PST; the clocks jump on Sunday 2026-03-08. A clock in the same
    # zone must not fool the arithmetic (Python subtracts same-zone datetimes by wall clock).
    fire = dt.datetime(2026, 3, 4, 18, tzinfo=LA)
    weekly = WEEKLY
    now = dt.datetime(2026, 3, 11, 17, 30, tzinfo=LA)  # 30 min before the next send (PDT)
    decision = decide_on_start(
        weekly, now=now, grace=dt.timedelta(days=7), week_recorded=False, fresh_database=False
    )
    assert decision.fire_time == fire
    assert decision.late_by == dt.timedelta(days=6, hours=22, minutes=30)  # one hour was skipped
    assert decision.action is StartAction.CATCH_UP


def test_is_too_late() -> None:
    assert not is_too_late(WED, now=WED + GRACE, grace=GRACE)
    assert is_too_late(WED, now=WED + GRACE + dt.timedelta(microseconds=1), grace=GRACE)
