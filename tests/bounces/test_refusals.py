"""Send-time refusals: the classifier decides what counts as a bounce; every refusal is recorded
with its class; a burst of blocks from one domain pauses it. Real aiosmtpd, real SQLite."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.delivery import add_subscribers, make_issue, worker_for
from tests.support.smtpd import SMTPServer
from tests.support.smtpd import _Handler as _BaseHandler
from weekly_mailer.bounces.refusals import PauseRule, classify_failure, outcome_class
from weekly_mailer.config import Settings
from weekly_mailer.delivery.pipeline import unrecorded_bound
from weekly_mailer.delivery.results import counts_as_bounce
from weekly_mailer.errors import NotABounce, PermanentFailure
from weekly_mailer.store import outbox
from weekly_mailer.store.bounce_models import BounceEvent, DomainPause
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery, Subscriber
from weekly_mailer.store.outbox import ClaimedRow, Outcome


@pytest.mark.parametrize(
    ("reply", "bounce"),
    [
        ("550 5.1.1 <a@b.example>: Recipient address rejected: User unknown", True),
        ("550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org", False),
        ("550 5.7.1 Message rejected by policy", False),
        ("550 5.7.26 Unauthenticated email is not accepted (DMARC)", False),
        ("550 mailbox unavailable", True),  # bare 550, telling text: hard
        ("550 Requested action not taken: user unknown", True),
        ("550", True),  # bare 550, no text: "mailbox unavailable" (RFC 5321), hard
        ("550 Rejected: too many messages from your IP", False),
        ("552 5.2.2 Mailbox full", False),
        ("554 Transaction failed", False),  # nothing to go on: unknown
        ("550 5.2.1 The email account that you tried to reach is disabled", False),  # X.2.1
    ],
)
def test_only_a_hard_refusal_counts_as_a_bounce(reply: str, bounce: bool) -> None:
    assert counts_as_bounce(PermanentFailure(reply, code=int(reply[:3]))) is bounce


# RCPT TO replies in the shapes big receivers give them, and their class.
PROVIDER_REPLIES = [
    (
        "550-5.1.1 The email account that you tried to reach does not exist. Please try "
        "double-checking the recipient's email address for typos",
        "hard",
    ),  # Gmail
    (
        "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
        "[AM4PEPF00025F96.EURPRD83.prod.outlook.com]",
        "hard",
    ),  # Outlook.com
    (
        "554 delivery error: dd Sorry your message to ann@yahoo.com cannot be delivered. This "
        "mailbox is disabled (554.30). - mta4321.mail.ne1.yahoo.com",
        "soft",  # disabled (suspended, inactive) is a mailbox state, not a missing mailbox
    ),  # Yahoo
    (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "hard",
    ),  # Office 365
    ("550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", "hard"),  # O365 DBEB
    ("550 5.1.1 <ann@icloud.example>: user does not exist", "hard"),  # iCloud
    (
        "550 Message was not accepted -- invalid mailbox. Local mailbox ann@mail.example is "
        "unavailable: account is disabled",
        "soft",
    ),
    ("551 User not local; please try <ann@new.example>", "hard"),
    ("550 No such user (ann@gmx.example)", "hard"),
    ("550 #5.1.0 Address rejected.", "hard"),
    (
        "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.10, because the ip is in "
        "Spamhaus's list; see https://www.spamhaus.org",
        "block",
    ),  # Yahoo
    (
        "550-5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail "
        "requires all senders to authenticate with either SPF or DKIM.",
        "block",
    ),
    (
        "550-5.7.1 [192.0.2.10] Our system has detected that this message is likely unsolicited "
        "mail.",
        "block",
    ),  # Gmail
    (
        "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your "
        "Internet service provider since part of their network is on our block list (S3150).",
        "block",
    ),  # Outlook.com
    ("554 5.7.1 Rejected by Proofpoint: spam score too high", "block"),
    ("554 5.7.9 Message not accepted for policy reasons.", "block"),  # Yahoo
    ("550 5.7.606 Access denied, banned sending IP [192.0.2.10]", "block"),  # Office 365
    (
        "550 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using Barracuda "
        "Reputation",
        "block",
    ),
    ("550 High probability of spam", "block"),
    ("550 5.7.1 DMARC policy violation", "block"),
    ("552 5.2.2 The email account that you tried to reach is over quota.", "soft"),
]


@pytest.mark.parametrize(("reply", "kind"), PROVIDER_REPLIES)
def test_provider_replies_at_rcpt_get_their_class(reply: str, kind: str) -> None:
    failure = PermanentFailure(reply, code=int(reply[:3]))
    assert classify_failure(failure).kind.value == kind
    assert counts_as_bounce(failure) is (kind == "hard")


def test_a_refusal_after_data_never_counts() -> None:
    assert counts_as_bounce(NotABounce("550 5.1.1 no such user", code=550)) is False


def _row(delivery_id: int = 1, email: str = "a@x.example") -> ClaimedRow:
    return ClaimedRow(delivery_id, 1, 1, email, email, "", 0, None)


def test_a_deferred_row_that_finally_fails_is_expired_or_still_a_block() -> None:
    gave_up = Outcome(_row(), "failed", code=451, error="gave up after 9 attempts: 451 4.3.0 later")
    c = outcome_class(gave_up)
    assert c is not None and c.kind.value == "expired"
    blocked = Outcome(
        _row(), "failed", code=421, error="gave up after 9 attempts: 421 4.7.0 IP blocked"
    )
    c = outcome_class(blocked)
    assert c is not None and c.kind.value == "block"
    assert outcome_class(Outcome(_row(), "failed", error="cannot compose: bad")) is None
    assert outcome_class(Outcome(_row(), "sent", code=250)) is None


# -- a real server -----------------------------------------------------------------------------


class _ByDomain(_BaseHandler):
    """RCPT replies by the recipient's domain: a policy block, a dead mailbox, or accepted."""

    replies = {
        "blocked.example": "550 5.7.1 Message rejected by policy (see https://x.example/p)",
        "gone.example": "550 5.1.1 No such user here",
    }

    async def handle_RCPT(self, srv: Any, session: Any, envelope: Any, address: str, _: Any) -> str:
        reply = self.replies.get(address.rpartition("@")[2].lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"


def _setup(db: Database, per_domain: dict[str, int]) -> int:
    with db.sessions.begin() as s:
        for domain, n in per_domain.items():
            add_subscribers(s, n, domain=domain)
        issue = make_issue(s)
        outbox.enqueue(s, issue, now=dt.datetime.now(dt.UTC))
        return issue.id


def _events(db: Database) -> list[tuple[str, str, str, int | None]]:
    with db.sessions.begin() as s:
        rows = s.scalars(select(BounceEvent).order_by(BounceEvent.id))
        return [(e.kind, e.domain, e.status, e.code) for e in rows]


def test_a_policy_block_bounces_nobody_and_a_dead_mailbox_does(
    database: Database, settings: Settings
) -> None:
    _setup(database, {"blocked.example": 12, "gone.example": 3, "fine.example": 5})
    with SMTPServer() as server:
        server.controller.handler = _ByDomain(server)
        worker_for(database, settings, server, bounce_limit=1, block_pause_threshold=100).run()
        assert len(server.received()) == 5
    with database.sessions.begin() as s:
        status = {x.email: x.status for x in s.scalars(select(Subscriber))}
        linked = s.execute(
            select(BounceEvent.delivery_id, Delivery.subscriber_id, BounceEvent.subscriber_id).join(
                Delivery, Delivery.id == BounceEvent.delivery_id
            )
        ).all()
    assert {e for e, st in status.items() if st == "bounced"} == {
        f"user{i:04d}@gone.example" for i in range(3)
    }
    assert all(st == "active" for e, st in status.items() if not e.endswith("@gone.example"))
    events = _events(database)
    assert sorted(set(events)) == [
        ("block", "blocked.example", "5.7.1", 550),
        ("hard", "gone.example", "5.1.1", 550),
    ]
    assert [k for k, *_ in events].count("block") == 12 and len(events) == 15
    assert len(linked) == 15 and all(d == s for _, d, s in linked)  # the delivery's subscriber


class _PolicyForEveryone(_BaseHandler):
    """550 5.7.1 to every recipient, each with its own reference (so the circuit breaker, which
    stops a send after 20 identical refusals, lets the whole list through)."""

    async def handle_RCPT(self, srv: Any, session: Any, envelope: Any, address: str, _: Any) -> str:
        self.server.refused.append(address)
        n = len(self.server.refused)
        return f"550 5.7.1 [ref {n:04d}] Message rejected by policy"


def test_a_server_refusing_every_recipient_with_a_policy_block_bounces_nobody(
    database: Database, settings: Settings
) -> None:
    _setup(database, {"isp.example": 40})
    with SMTPServer() as server:
        server.controller.handler = _PolicyForEveryone(server)
        worker_for(database, settings, server, bounce_limit=1, concurrency=2).run()
        assert len(server.refused) == 40 and server.received() == []
    with database.sessions.begin() as s:
        subs = list(s.scalars(select(Subscriber)))
        failed = s.scalars(select(Delivery.status)).all()
    assert [(x.status, x.bounce_count) for x in subs] == [("active", 0)] * 40
    assert failed == ["failed"] * 40
    assert [k for k, *_ in _events(database)] == ["block"] * 40


def test_a_burst_of_blocks_pauses_the_domain_and_moves_its_waiting_rows(
    database: Database, settings: Settings
) -> None:
    _burst_of_blocks(database, settings)


@pytest.mark.postgres
def test_postgres_a_burst_of_blocks_pauses_the_domain(pg_url: str, settings: Settings) -> None:
    from weekly_mailer.store.db import make_engine, upgrade

    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    with Database(settings.replace(database_url=pg_url)) as db:
        _burst_of_blocks(db, settings.replace(database_url=pg_url))


def _burst_of_blocks(database: Database, settings: Settings) -> None:
    issue_id = _setup(database, {"blocked.example": 30, "fine.example": 6})
    started = dt.datetime.now(dt.UTC)
    with SMTPServer() as server:
        server.controller.handler = _ByDomain(server)
        worker = worker_for(
            database,
            settings,
            server,
            batch_size=2,  # most rows stay queued: claimed rows in flight may go on
            concurrency=1,
            block_pause_threshold=5,
            block_pause_window_minutes=10,
            block_pause_minutes=40,
        )
        worker.run()
        assert len(server.received()) == 6  # the other domain is not paused
    with database.sessions.begin() as s:
        pause = s.scalars(select(DomainPause)).one()
        rows = s.execute(
            select(Delivery.status, Delivery.next_attempt_at, Subscriber.email)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.issue_id == issue_id)
        ).all()
    blocked = [r for r in rows if r.email.endswith("@blocked.example")]
    failed = [r for r in blocked if r.status == "failed"]
    waiting = [r for r in blocked if r.status == "queued"]
    # The threshold, plus what was on the wire or not yet recorded when the pause was written
    # (the pipelined engine's chunks: pipeline.unrecorded_bound).
    assert 5 <= len(failed) <= 5 + unrecorded_bound(worker.settings), len(failed)
    assert len(failed) + len(waiting) == 30
    assert pause.domain == "blocked.example" and pause.blocks == len(failed)
    assert pause.rows_moved == len(waiting) > 0
    assert pause.reason.startswith("550 5.7.1 Message rejected by policy")
    expected = started + dt.timedelta(minutes=40)
    assert abs((pause.until - expected).total_seconds()) < 30
    assert {r.next_attempt_at for r in waiting} == {pause.until}
    assert all(r.status == "sent" for r in rows if r.email.endswith("@fine.example"))


def test_the_pause_rule_comes_from_the_settings(settings: Settings) -> None:
    rule = PauseRule.of(
        settings.replace(
            block_pause_threshold=3, block_pause_window_minutes=2, block_pause_minutes=7.5
        )
    )
    assert rule == PauseRule(3, dt.timedelta(minutes=2), dt.timedelta(minutes=7.5))


@pytest.mark.postgres
def test_postgres_two_workers_pausing_one_domain_at_once_both_keep_their_outcomes(
    pg_url: str, settings: Settings
) -> None:
    import threading
    import time

    from weekly_mailer.bounces.refusals import record_refusals
    from weekly_mailer.store.db import make_engine, upgrade

    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    rule = PauseRule(threshold=3)
    with Database(settings.replace(database_url=pg_url)) as db:
        issue_id = _setup(db, {"blocked.example": 10})
        now = dt.datetime.now(dt.UTC)
        with db.sessions.begin() as s:
            rows, _ = outbox.claim(
                s, owner="w", now=now, lease_seconds=60, limit=10, issue_id=issue_id
            )
        assert len(rows) == 10
        refused = [
            Outcome(r, "failed", code=550, error="550 5.7.1 blocked by policy") for r in rows
        ]
        first = db.sessions()
        first.begin()
        assert len(record_refusals(first, refused[:5], now=now, rule=rule)) == 1
        got: dict[str, Any] = {}

        def second() -> None:  # waits on the unique domain until the first commits
            with db.sessions.begin() as s2:
                got["pauses"] = record_refusals(s2, refused[5:], now=now, rule=rule)

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        first.commit()
        first.close()
        thread.join(timeout=20)
        assert got == {"pauses": []}
        with db.sessions.begin() as s:
            assert len(s.scalars(select(DomainPause)).all()) == 1
            assert len(s.scalars(select(BounceEvent)).all()) == 10
