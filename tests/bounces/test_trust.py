"""Forgery: a report changes a reader only when tied to a message we sent them."""

from __future__ import annotations

from sqlalchemy import select

from tests.bounces.test_about import NOW, _dsn
from tests.issues.test_health import LAST_WEEK, arf_quoting, sent_issue
from weekly_mailer import issues
from weekly_mailer.bounces.intake import IngestSummary, apply_report, parse_report
from weekly_mailer.compose import make_message_id
from weekly_mailer.config import Settings
from weekly_mailer.store.bounce_models import BounceEvent
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery, Subscriber


def _readers(session, n: int) -> tuple[int, list[Subscriber]]:  # type: ignore[no-untyped-def]
    issue_id, rows = sent_issue(session, delivered=n)
    subs = [session.get(Subscriber, session.get(Delivery, r).subscriber_id) for r in rows]
    return issue_id, subs


def _apply(session, data: bytes, settings: Settings, summary: IngestSummary, **kw):  # type: ignore[no-untyped-def]
    return apply_report(
        session, parse_report(data), bounce_limit=1, summary=summary, now=NOW,
        secret_key=settings.secret_key, **kw,
    )  # fmt: skip


def test_a_dsn_or_arf_without_verp_or_our_message_id_changes_nobody(
    database: Database, settings: Settings
) -> None:
    with database.sessions.begin() as session:
        _issue_id, subs = _readers(session, 3)
        summary = IngestSummary()
        note = _apply(session, _dsn(subs[0].email), settings, summary)
        _apply(
            session, arf_quoting("<stranger@elsewhere.example>", subs[1].email), settings, summary
        )
        assert [s.status for s in subs] == ["active", "active", "active"]
        assert summary.untrusted == 2 and summary.trust_line().startswith("Untrusted: 2 reports")
        assert note.startswith("untrusted")
        assert session.scalars(select(BounceEvent.trusted)).all() == [False, False]
        # bounce_trust = "any": today's behaviour, the same reports are believed.
        _apply(session, _dsn(subs[2].email, n=9), settings, IngestSummary(), trust="any")
        assert subs[2].status == "bounced"


def test_own_message_id_in_reports_naming_others_raises_no_rate_and_holds_nothing(
    database: Database, settings: Settings
) -> None:
    with database.sessions.begin() as session:
        issue_id, subs = _readers(session, 3)
        mine = make_message_id(settings, LAST_WEEK, subs[0].id)
        summary = IngestSummary()
        for n, other in enumerate((subs[1].email, subs[2].email, "made.up@example.org")):
            data = arf_quoting(mine, other).replace(b"report.1", f"report.{n}".encode())
            _apply(session, data, settings, summary)
        assert [s.status for s in subs] == ["active", "active", "active"]
        assert issues.issue_health(session, issue_id).complaints == 0
        assert issues.guard(session, settings, now=NOW, issue_ids={issue_id}) == []
        assert summary.untrusted == 3


def test_a_tampered_message_id_changes_nobody_and_the_genuine_one_complains(
    database: Database, settings: Settings
) -> None:
    with database.sessions.begin() as session:
        issue_id, subs = _readers(session, 3)
        real = make_message_id(settings, LAST_WEEK, subs[0].id)
        tampered = real[:-20] + ("0" if real[-20] != "0" else "1") + real[-19:]
        summary = IngestSummary()
        _apply(session, arf_quoting(tampered, subs[0].email), settings, summary)
        assert subs[0].status == "active" and summary.untrusted == 1
        data = arf_quoting(real, subs[0].email).replace(b"report.1", b"report.2")
        _apply(session, data, settings, summary)
        assert subs[0].status == "complained"
        assert issues.issue_health(session, issue_id).complaints == 1
