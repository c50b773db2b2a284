"""The shared contract with the webhooks: ``apply_report(..., about=delivery)`` applies a report
the caller has verified (a provider's signed event) exactly like a report to that delivery's
genuine VERP address."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from weekly_mailer.bounces.intake import IngestSummary, apply_report, parse_report
from weekly_mailer.store.bounce_models import BounceEvent
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery, Issue, Subscriber

NOW = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)


def _dsn(failed_for: str, *, n: int = 1) -> bytes:
    """A DSN to the plain bounce address (no VERP), quoting no Message-ID of ours."""
    return (
        "Return-Path: <>\nFrom: MAILER-DAEMON@mx.elsewhere.example\nTo: bounces@example.org\n"
        "Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b0"\n'
        f"Message-Id: <dsn.{n}@mx.elsewhere.example>\n\n"
        "--b0\nContent-Type: text/plain\n\n"
        f"<{failed_for}>: 550 5.1.1 User unknown\n\n"
        "--b0\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.elsewhere.example\n\n"
        f"Final-Recipient: rfc822; {failed_for}\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{failed_for}>: User unknown\n\n"
        "--b0--\n"
    ).encode()


def _two_readers(session: Session) -> tuple[Delivery, Subscriber, Subscriber]:
    issue = Issue(send_week=dt.date(2026, 11, 18), status="sent", subject="Hedges")
    ada = Subscriber(email="ada@example.org", email_key="ada@example.org", status="active")
    bob = Subscriber(email="bob@example.org", email_key="bob@example.org", status="active")
    session.add_all([issue, ada, bob])
    session.flush()
    delivery = Delivery(issue_id=issue.id, subscriber_id=ada.id, status="sent")
    session.add(delivery)
    session.flush()
    return delivery, ada, bob


def test_a_verified_event_applies_to_its_delivery_like_a_verp_report(database: Database) -> None:
    with database.sessions.begin() as session:
        delivery, ada, bob = _two_readers(session)
        summary = IngestSummary()
        # The report names bob (a forwarded address, or a lie): the verified delivery is ada's.
        note = apply_report(
            session,
            parse_report(_dsn("bob@example.org")),
            bounce_limit=1,
            summary=summary,
            now=NOW,
            about=delivery,
        )
        assert (ada.status, bob.status) == ("bounced", "active")
        rows = session.execute(
            select(BounceEvent.subscriber_id, BounceEvent.delivery_id, BounceEvent.issue_id)
        ).all()
        assert rows == [(ada.id, delivery.id, delivery.issue_id)]
        assert (summary.verp_matched, summary.newly_bounced) == (1, 1)
        assert summary.issue_ids == {delivery.issue_id}
        assert f"delivery {delivery.id}" in note and "hard" in note


def test_without_about_the_same_report_is_not_tied_to_the_delivery(database: Database) -> None:
    with database.sessions.begin() as session:
        delivery, ada, _bob = _two_readers(session)
        summary = IngestSummary()
        apply_report(
            session,
            parse_report(_dsn("bob@example.org")),
            bounce_limit=1,
            summary=summary,
            now=NOW,
        )
        assert ada.status == "active"
        assert summary.verp_matched == 0
        assert session.scalar(select(BounceEvent.delivery_id)) is None
