"""The circuit breaker alone, and two breakers counting in one shared streak (what the delivery
processes of one send do; the end-to-end test is tests/cli/test_send.py's refusing-everyone)."""

from __future__ import annotations

import multiprocessing

from weekly_mailer.delivery.breaker import Breaker, SharedStreak

REFUSAL = "550 5.1.1 <recipient>: no such user"


def test_twenty_identical_refusals_in_a_row_trip_and_drop_the_held_bounces() -> None:
    b = Breaker(20)
    assert not any(b.note(REFUSAL, subscriber_id=i, bounce=True) for i in range(19))
    assert b.note(REFUSAL, subscriber_id=19, bounce=True)
    assert b.tripped is not None and "20 recipients in a row" in b.tripped and REFUSAL in b.tripped
    assert not b.note(REFUSAL, subscriber_id=20, bounce=True)  # in flight: held against nobody
    b.end_run()
    assert b.take_bounces() == []


def test_a_delivery_or_another_refusal_releases_the_streak_as_real_bounces() -> None:
    b = Breaker(20)
    for i in range(15):
        b.note(REFUSAL, subscriber_id=i, bounce=True)
    assert not b.has_bounces()
    b.note(None)
    assert b.take_bounces() == list(range(15))
    for i in range(3):
        b.note(REFUSAL, subscriber_id=100 + i, bounce=True)
    b.note("550 5.1.1 <recipient>: moved", subscriber_id=200, bounce=True)
    assert b.take_bounces() == [100, 101, 102]
    b.end_run()  # a run the breaker did not stop: the last streak was real too
    assert b.take_bounces() == [200]
    assert b.tripped is None


def _pair() -> tuple[Breaker, Breaker]:
    streak = SharedStreak(multiprocessing.get_context("spawn"))
    a, b = Breaker(20), Breaker(20)
    a.share(streak)
    b.share(streak)
    return a, b


def test_shared_breakers_trip_on_twenty_in_a_row_between_them() -> None:
    a, b = _pair()
    trips = [(a if i % 2 else b).note(REFUSAL, subscriber_id=i, bounce=True) for i in range(20)]
    assert trips == [False] * 19 + [True]  # 10 each: the 20th of the two trips
    assert a.tripped is not None and b.tripped is None
    # The other one trips at its next identical refusal (the streak is past the limit), and
    # what it held of the streak is dropped.
    assert b.note(REFUSAL, subscriber_id=99, bounce=True)
    b.end_run()
    a.end_run()
    assert a.take_bounces() == [] and b.take_bounces() == []


def test_a_delivery_in_one_ends_the_streak_of_both() -> None:
    a, b = _pair()
    for i in range(15):
        a.note(REFUSAL, subscriber_id=i, bounce=True)
    b.note(None)  # the other process delivered one: the 15 were not a server refusing everyone
    assert not any(b.note(REFUSAL, subscriber_id=100 + i, bounce=True) for i in range(19))
    assert a.tripped is None and b.tripped is None
    assert a.note(REFUSAL, subscriber_id=50, bounce=True)  # the 20th since the delivery
    assert a.take_bounces() == list(range(15))  # its old streak ended at the delivery: real
    assert b.note(REFUSAL, subscriber_id=119, bounce=True)  # the 21st: b stops too
    a.end_run()
    b.end_run()
    assert a.take_bounces() == [] and b.take_bounces() == []  # the tripped streak: nobody
