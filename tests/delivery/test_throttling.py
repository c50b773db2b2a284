"""Throttling replies slow the send down and never fail a message, in both SMTP engines, at
RCPT, at the DATA command and after the final dot; and a relay that takes 14 messages a second
(SES's first limit) gets a list of 500 delivered, none failed, with ``send_rate`` unset."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import select

from tests.support.delivery import SimpleRenderers, add_subscribers, make_issue, worker_for
from tests.support.smtpd_quota import SES_THROTTLE, ThrottlingRelay
from weekly_mailer.config import Settings
from weekly_mailer.delivery import resolve_backend
from weekly_mailer.delivery.worker import Worker
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery

READERS = 500  # 36 s at 14 a second
THROTTLING_REPLIES = [
    "454 Throttling failure: Maximum sending rate exceeded.",
    "454 Throttling failure: Daily message quota exceeded.",
    "421 4.7.0 Try again later, closing connection.",
    "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP "
    "reputation.",
    "554 Throttling failure: Daily message quota exceeded.",  # said with a 5xx, still a pace
]


def enqueue_issue(database: Database, n: int) -> tuple[int, list[str]]:
    with database.sessions.begin() as s:
        emails = add_subscribers(s, n)
        issue = make_issue(s)
        outbox.enqueue(s, issue, now=dt.datetime.now(dt.UTC))
        return issue.id, emails


def rows(database: Database, issue_id: int) -> list[tuple[str, str, int, object]]:
    with database.sessions.begin() as s:
        found = s.execute(
            select(Delivery.status, Delivery.last_error, Delivery.attempts,
                   Delivery.first_failure_at).where(Delivery.issue_id == issue_id)
        ).all()  # fmt: skip
        return [tuple(r) for r in found]  # type: ignore[misc]


@pytest.mark.parametrize("engine", ["pipelined", "smtplib"])
@pytest.mark.parametrize("stage", ["rcpt", "data", "dot"])
def test_every_throttling_reply_at_every_stage_is_a_wait_never_a_failure(
    database: Database, settings: Settings, engine: str, stage: str
) -> None:
    issue_id, emails = enqueue_issue(database, 20)
    throttled = dict(zip(emails[::4], THROTTLING_REPLIES, strict=True))
    with ThrottlingRelay(replies=throttled, stage=stage) as relay:
        url = relay.url + ("?engine=smtplib" if engine == "smtplib" else "")
        s = settings.replace(backend_url=url, throttle_pause_seconds=0.2, smtp_timeout=5)
        worker = Worker(database.sessions, s, resolve_backend(s), SimpleRenderers())
        stats = worker.run(max_wait=5)
        worker.backend.close()
    assert relay.throttled == len(THROTTLING_REPLIES)  # each reply was given once
    got = sorted(r.rcpt_tos[0] for r in relay.received())
    assert got == sorted(emails)  # everyone, once
    found = rows(database, issue_id)
    assert {r[0] for r in found} == {"sent"} and stats.failed == 0
    # Nothing counted against the throttled rows: one attempt each, the one that went.
    assert {(r[2], r[3]) for r in found} == {(1, None)}
    assert stats.slowed >= 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_relay_of_14_a_second_gets_500_readers_delivered_none_failed(
    database: Database, settings: Settings
) -> None:
    """500 readers are 36 s at the relay's pace: the list starts at full speed, is cut, climbs
    and is cut again many times over (cuts at most every 3 s). What is asserted holds for each
    message (sent once, one attempt, no failure counted), so 2,000 (143 s) asserted nothing
    more and cost the suite two minutes."""
    issue_id, emails = enqueue_issue(database, READERS)
    with ThrottlingRelay(rate=14, reply=SES_THROTTLE) as relay:
        worker = worker_for(database, settings, relay, concurrency=4, throttle_pause_seconds=10)
        assert worker.settings.send_rate == 0
        started = time.monotonic()
        stats = worker.run(max_wait=30)
        took = time.monotonic() - started
    got = [r.rcpt_tos[0] for r in relay.received()]
    assert len(got) == READERS and sorted(got) == sorted(emails)  # all of them, nobody twice
    found = rows(database, issue_id)
    assert {r[0] for r in found} == {"sent"} and stats.failed == 0
    assert {(r[2], r[3]) for r in found} == {(1, None)}  # the throttled waits counted nothing
    assert relay.throttled > 0  # it did say 454: the test proves the throttle handling
    # Printed, not asserted (speed is for benchmarks): the slowdown settles near the relay's
    # rate (ratelimit.SlowDown, AIMD-like). Runs of 2026-12-07 on a shared 2-core machine:
    # before, 2,000 in 149 s with 7,290 throttling replies and in 147 s with 15,690 (the cap
    # swung round 14/s); after, 2,000 in 161 s with 477, 393 s with 712 (cuts too deep on a
    # burst), then with FEW 163 s with 1,074 (most of them in the first seconds, before the
    # first cuts: the list starts at full speed). 143 s is the relay's own pace. Since the
    # list is 500 (36 s at the relay's pace) to keep the suite short.
    print(f"\n14/s relay: {len(got)} in {took:.0f}s, {relay.throttled} throttling replies, "
          f"most in one second {relay.most_in_one_second()}")  # fmt: skip
