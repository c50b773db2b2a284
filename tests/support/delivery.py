"""Helpers for the delivery tests: subscribers in bulk, a stored issue, a simple renderer."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from weekly_mailer import subscribers as subs
from weekly_mailer.delivery import resolve_backend
from weekly_mailer.delivery.backends.base import Envelope
from weekly_mailer.delivery.worker import Worker
from weekly_mailer.store.models import Issue, IssueStatus
from weekly_mailer.store.outbox import ClaimedRow

if TYPE_CHECKING:
    from tests.support.smtpd import SMTPServer
    from weekly_mailer.config import Settings
    from weekly_mailer.store.db import Database

_OPEN: list[Any] = []  # backends made by worker_for, closed after each test (conftest)


def add_subscribers(session: Session, n: int, *, domain: str = "example.org") -> list[str]:
    """Add ``n`` active subscribers user0000@domain… in one import; returns the addresses."""
    emails = [f"user{i:04d}@{domain}" for i in range(n)]
    data = ("email,name\n" + "".join(f"{e},User {i}\n" for i, e in enumerate(emails))).encode()
    report = subs.import_file(session, data, filename="test.csv", confirmed=True)
    assert not report.errors
    return emails


def make_issue(session: Session, week: dt.date = dt.date(2026, 11, 25)) -> Issue:
    issue = Issue(send_week=week, status=IssueStatus.READY.value, subject="Test issue")
    session.add(issue)
    session.flush()
    return issue


def message_id(row: ClaimedRow) -> str:
    return f"<issue{row.issue_id}.sub{row.subscriber_id}@test.example.org>"


class SimpleRenderers:
    """A tiny stand-in for the composer: one text message per row."""

    def __init__(self, sender: str = "news@example.org") -> None:
        self.sender = sender
        self.loaded: list[int] = []

    def for_issue(self, issue_id: int):  # type: ignore[no-untyped-def]
        self.loaded.append(issue_id)

        def render(row: ClaimedRow) -> Envelope:
            mid = message_id(row)
            data = (
                f"From: {self.sender}\r\nTo: {row.email}\r\nSubject: Issue {issue_id}\r\n"
                f"Date: {format_datetime(dt.datetime.now(dt.UTC))}\r\nMessage-ID: {mid}\r\n"
                f"\r\nHello {row.name}.\r\n"
            ).encode()
            return Envelope(self.sender, row.email, data, mid)

        return render

    def for_confirmations(self):  # type: ignore[no-untyped-def]
        def render(row: ClaimedRow) -> Envelope:
            mid = f"<confirm{row.delivery_id}@test.example.org>"
            data = (
                f"From: {self.sender}\r\nTo: {row.email}\r\nSubject: Confirm\r\n"
                f"Message-ID: {mid}\r\n\r\nConfirm, please.\r\n"
            ).encode()
            return Envelope(self.sender, row.email, data, mid)

        return render


def sessions_of(db: object) -> sessionmaker[Session]:
    return db.sessions  # type: ignore[attr-defined, no-any-return]


def worker_for(db: Database, settings: Settings, server: SMTPServer, **kw: Any) -> Worker:
    """A worker with a real SMTP backend for ``server`` (closed at the end of the test)."""
    settings = settings.replace(backend_url=server.url, smtp_timeout=5, **kw)
    backend = resolve_backend(settings)
    _OPEN.append(backend)
    return Worker(db.sessions, settings, backend, SimpleRenderers())


def close_backends() -> None:
    """Close what :func:`worker_for` opened."""
    while _OPEN:
        _OPEN.pop().close()
