"""Bounce and complaint reports applied to subscribers, each one recorded in ``bounce_event``.

Reading a message is :mod:`weekly_mailer.subscribers.report_reader`; classifying a failure is
:mod:`weekly_mailer.subscribers.classify`. What each kind does:

- ``hard`` (no such mailbox or domain): one bounce for the subscriber (``rules.note_bounce``);
  ``bounce_limit`` of them make the subscriber ``bounced``.
- ``soft``, ``expired``, ``unknown``: recorded; the subscriber is untouched.
- ``block`` (spam, policy, reputation, authentication, rate limits): recorded with the receiving
  domain; never touches the subscriber: a block is the sender's problem.
- ARF ``complaint`` (abuse, fraud, virus): the subscriber becomes ``complained`` at once;
  ``opt-out``: unsubscribed; other feedback (auth-failure, not-spam…): recorded only.
- A message sent to ``unsubscribe_mailto`` (the ``mailto:`` of List-Unsubscribe) unsubscribes
  its sender. Auto-replies and anything else change nothing.

A report whose Message-ID was already recorded is skipped, so reading a mailbox twice counts
nothing twice. A report that quotes the Message-ID of one of our issue copies (checked against
``secret_key``) is tied to that issue (``bounce_event.issue_id``), for the list-health rates.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from weekly_mailer.compose.links import read_message_id
from weekly_mailer.store.bounce_models import BounceEvent, BounceKind
from weekly_mailer.store.models import Issue, Subscriber
from weekly_mailer.subscribers import complain, note_bounce, unsubscribe
from weekly_mailer.subscribers.report_reader import Finding, Report, parse_report

__all__ = ["Finding", "IngestSummary", "Report", "apply_report", "parse_report"]


@dataclasses.dataclass
class IngestSummary:
    messages: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0  # soft and expired: temporary, ignored
    newly_bounced: int = 0
    complaints: int = 0
    unsubscribes: int = 0
    unknown_recipients: int = 0
    not_reports: int = 0
    auto_replies: int = 0
    already_seen: int = 0
    issue_ids: set[int] = dataclasses.field(default_factory=set)  # issues the reports were about
    kinds: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def line(self) -> str:
        """The summary line (its wording is relied on by scripts: extend, never reword)."""
        return (
            f"{self.messages} messages: {self.hard_bounces} hard bounces "
            f"({self.newly_bounced} subscribers now bounced), {self.soft_bounces} temporary "
            f"failures ignored, {self.complaints} complaints, "
            f"{self.unsubscribes} unsubscribe requests, "
            f"{self.unknown_recipients} unknown recipients, {self.not_reports} not reports."
        )

    def kinds_line(self) -> str:
        """Per-kind counts of the findings, then the auto-replies and already-seen reports."""
        counts = ", ".join(f"{self.kinds[k.value]} {k.value}" for k in BounceKind)
        return (
            f"By kind: {counts}; {self.auto_replies} auto-replies, "
            f"{self.already_seen} already seen."
        )


def _seen(session: Session, message_id: str) -> bool:
    if not message_id:
        return False
    query = select(BounceEvent.id).where(BounceEvent.message_id == message_id).limit(1)
    return session.scalar(query) is not None


def apply_report(
    session: Session,
    report: Report,
    *,
    bounce_limit: int,
    summary: IngestSummary,
    now: dt.datetime,
    secret_key: str = "",
) -> None:
    """Apply one report to the subscribers it names, and record its findings (tied to the issue
    whose Message-ID it quotes, when ``secret_key`` vouches for that id)."""
    summary.messages += 1
    if report.kind in ("other", "auto-reply") or (
        report.kind != "unsubscribe" and not report.findings
    ):
        summary.not_reports += 1
        summary.auto_replies += report.kind == "auto-reply"
        return
    if _seen(session, report.message_id):
        summary.already_seen += 1
        return
    acting = (BounceKind.HARD, BounceKind.COMPLAINT, BounceKind.OPT_OUT)
    keys = list(dict.fromkeys([f.recipient for f in report.findings] + report.unsubscribed))
    found = {
        s.email_key: s
        for s in session.scalars(select(Subscriber).where(Subscriber.email_key.in_(keys)))
    }
    summary.unknown_recipients += sum(
        1 for k in report.recipients(*acting) + report.unsubscribed if k not in found
    )
    issue_id = _issue_of(session, report, secret_key)
    if issue_id is not None:
        summary.issue_ids.add(issue_id)
    for finding in report.findings:
        summary.kinds[finding.kind.value] += 1
        summary.soft_bounces += finding.kind in (BounceKind.SOFT, BounceKind.EXPIRED)
        _record(session, finding, found.get(finding.recipient), report.message_id, now, issue_id)
    hard_ids = [found[k].id for k in report.hard if k in found]
    summary.hard_bounces += len(hard_ids)
    detail = next((f"{f.status} {f.reason}".strip() for f in report.findings), "bounce report")
    summary.newly_bounced += note_bounce(
        session, hard_ids, limit=bounce_limit, detail=detail[:500] or "bounce report"
    )
    for key in report.complained:
        sub = found.get(key)
        if sub is not None and complain(
            session, sub, source="bounces", detail="feedback report", now=now
        ):
            summary.complaints += 1
    for key in report.recipients(BounceKind.OPT_OUT):
        sub = found.get(key)
        if sub is not None and unsubscribe(
            session, sub, source="arf", detail="feedback report: opt-out", now=now
        ):
            summary.unsubscribes += 1
    for key in dict.fromkeys(report.unsubscribed):
        sub = found.get(key)
        if sub is not None and unsubscribe(
            session, sub, source="mailto", detail="List-Unsubscribe mailto request", now=now
        ):
            summary.unsubscribes += 1
    session.flush()


def _issue_of(session: Session, report: Report, secret_key: str) -> int | None:
    """The issue whose copy the report is about: the first quoted Message-ID of ours that
    ``secret_key`` vouches for, naming a send week (or an issue id) that has an issue."""
    for message_id in report.original_ids:
        parts = read_message_id(message_id, secret_key=secret_key)
        if parts is None:
            continue
        key = parts[0]
        try:
            week = dt.date.fromisoformat(key)
        except ValueError:
            query = select(Issue.id).where(Issue.id == int(key)) if key.isdigit() else None
        else:
            query = select(Issue.id).where(Issue.send_week == week)
        found = session.scalar(query) if query is not None else None
        if found is not None:
            return int(found)
    return None


def _record(
    session: Session,
    f: Finding,
    sub: Subscriber | None,
    message_id: str,
    now: dt.datetime,
    issue_id: int | None = None,
) -> None:
    session.add(
        BounceEvent(
            at=now,
            kind=f.kind.value,
            subscriber_id=sub.id if sub is not None else None,
            issue_id=issue_id,
            recipient=f.recipient[:320],
            domain=f.domain[:255],
            status=f.status[:20],
            code=f.code,
            reason=f.reason,
            source=f.source.value,
            message_id=message_id[:998],
        )
    )
