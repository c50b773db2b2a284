"""Bounce and complaint reports applied to subscribers, each one recorded in ``bounce_event``.

Reading a message is :mod:`weekly_mailer.bounces.report_reader`; classifying a failure is
:mod:`weekly_mailer.bounces.classify`. What each kind does:

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
nothing twice.

Trust: a report changes a reader only when it is tied to a message we sent that reader, and
then it changes only that reader:

- sent to a VERP address of ours (``bounces+<delivery>-<mac>@domain``, see
  ``tokens.VerpCodec``) whose mac verifies: about that delivery; its findings are the delivery's
  reader's, whatever address it names (a forwarded one, or none when the text is non-standard),
  and its rows carry the delivery (and its issue);
- ``about=`` a delivery: the caller (a webhook) verified the provider's signed event; applied
  exactly like a genuine VERP report of that delivery;
- quoting a Message-ID of ours (``wm.<issue>.<subscriber>.<mac>@…``, checked against
  ``secret_key``): about that subscriber and issue; findings naming that subscriber (or no
  address) are theirs, findings naming anyone else are recorded untrusted.

Everything else (no VERP, a forged VERP mac, a VERP address naming no delivery, a tampered
Message-ID) is recorded with ``trusted`` false and changes nobody; the list-health rates count
only trusted rows. ``bounce_trust = "any"`` believes a report tied to nothing, naming whom it
names (mail sent before VERP, a relay that drops the original headers).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from weekly_mailer.bounces.report_reader import Finding, Report, parse_report
from weekly_mailer.compose import envelope_sender
from weekly_mailer.compose.links import read_message_id
from weekly_mailer.store.bounce_models import BounceEvent, BounceKind
from weekly_mailer.store.models import Delivery, Issue, Subscriber
from weekly_mailer.subscribers import complain, note_bounce, unsubscribe
from weekly_mailer.tokens import VerpCodec
from weekly_mailer.words import plural

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

__all__ = ["Finding", "IngestSummary", "Report", "apply_report", "parse_report", "verp_reader"]


def verp_reader(settings: Settings) -> VerpCodec | None:
    """The codec that reads our VERP addresses: with ``bounce_address`` and ``secret_key``
    set (whatever ``verp`` says now: bounces of earlier sends still come back)."""
    if not settings.bounce_address or not settings.secret_key:
        return None
    return VerpCodec(settings.secret_key, envelope_sender(settings))


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
    verp_ignored: int = 0  # reports to a forged or unknown VERP address
    verp_matched: int = 0  # reports tied to their delivery by its VERP address
    untrusted: int = 0  # reports (some of) whose findings were tied to no message of ours
    issue_ids: set[int] = dataclasses.field(default_factory=set)  # issues the reports were about
    kinds: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def line(self) -> str:
        """The summary line (its wording is relied on by scripts: extend, never reword; each
        count agrees with its noun, ``1 message``, ``2 messages``)."""
        return (
            f"{plural(self.messages, 'message')}: {plural(self.hard_bounces, 'hard bounce')} "
            f"({plural(self.newly_bounced, 'subscriber')} now bounced), "
            f"{plural(self.soft_bounces, 'temporary failure')} ignored, "
            f"{plural(self.complaints, 'complaint')}, "
            f"{plural(self.unsubscribes, 'unsubscribe request')}, "
            f"{plural(self.unknown_recipients, 'unknown recipient')}, "
            f"{self.not_reports} not reports."
        )

    def kinds_line(self) -> str:
        """Per-kind counts of the findings, then the auto-replies and already-seen reports."""
        counts = ", ".join(f"{self.kinds[k.value]} {k.value}" for k in BounceKind)
        return (
            f"By kind: {counts}; {self.auto_replies} auto-replies, "
            f"{self.already_seen} already seen."
        )

    def trust_line(self) -> str:
        """How many reports were untrusted, or "" when none was."""
        if not self.untrusted:
            return ""
        return (
            f"Untrusted: {plural(self.untrusted, 'report')} tied to no message we sent the "
            "address named: recorded, nobody changed (bounce_trust = signed)."
        )

    def verp_line(self) -> str:
        """What VERP did, or "" when no report came to a VERP address."""
        if not self.verp_matched and not self.verp_ignored:
            return ""
        return (
            f"VERP: {self.verp_matched} reports tied to their delivery, {self.verp_ignored} to "
            "a forged or unknown VERP address ignored."
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
    verp: VerpCodec | None = None,
    about: Delivery | None = None,
    trust: str = "signed",
) -> str:
    """Apply one report to the reader it is tied to, and record its findings (``bounce_event``,
    each row ``trusted`` or not). Returns what tied it ("" when nothing did), for ``--dry-run``.

    A report is tied to a reader by ``about`` (the caller verified it is about that delivery: a
    provider's signed event), by a genuine VERP address of a delivery (both: every finding is
    that delivery's reader's, whatever address it names), or by a quoted Message-ID of ours
    whose signature (``secret_key``) names a reader (then only the findings naming that reader,
    or nobody, are theirs). A tied report changes only its reader; what it says about anyone
    else is recorded untrusted. A report tied to nobody changes nobody and is recorded
    untrusted, unless ``trust`` is ``"any"`` (``bounce_trust``): then every address it names
    is believed, as before VERP."""
    summary.messages += 1
    delivery: Delivery | None
    if about is not None:
        delivery, note = about, f"verified event for delivery {about.id}"
    else:
        delivery, note = _verp_delivery(session, report, verp)
    believe: frozenset[str] | None = frozenset()  # None: every address named
    issue_id: int | None = None
    if delivery is not None:
        summary.verp_matched += 1
        report = _for_delivery(session, report, delivery)
        believe = frozenset(f.recipient for f in report.findings)
        issue_id = delivery.issue_id  # None: a confirmation
        kinds = ", ".join(dict.fromkeys(f.kind.value for f in report.findings)) or "no finding"
        who = ", ".join(report.recipients(*BounceKind)) or "its subscriber"
        note = f"{note} ({who}): {kinds}"
    elif note:
        summary.verp_ignored += 1  # a forged or unknown VERP address: recorded, believed never
        issue_id = _issue_of(session, report, secret_key)
    elif (tie := _quoted_reader(session, report, secret_key)) is not None:
        sub, issue_id = tie
        report = _for_reader(report, sub.email_key)
        believe = frozenset({sub.email_key})
        note = f"quotes our Message-ID of subscriber {sub.id}"
        if any(f.recipient != sub.email_key for f in report.findings):
            note += " (untrusted for the other addresses it names)"
    else:
        issue_id = _issue_of(session, report, secret_key)
        if trust == "any":
            believe = None
            if report.forwarded_by:  # "Fw:" of a copy its sender got unnamed: that sender's
                report = _for_reader(report, report.forwarded_by)
                note = f"forwarded by {report.forwarded_by}: presumed its complainant"
        elif report.findings:
            note = "untrusted: tied to no message we sent, nobody changed"
    _apply(
        session,
        report,
        bounce_limit=bounce_limit,
        summary=summary,
        now=now,
        issue_id=issue_id,
        delivery=delivery,
        believe=believe,
    )
    return note


def _quoted_reader(
    session: Session, report: Report, secret_key: str
) -> tuple[Subscriber, int | None] | None:
    """The reader (and issue) of the first quoted Message-ID of ours that ``secret_key`` vouches
    for and that names an existing subscriber."""
    for message_id in report.original_ids:
        parts = read_message_id(message_id, secret_key=secret_key)
        if parts is None:
            continue
        sub = session.get(Subscriber, parts[1])
        if sub is not None:
            return sub, _issue_of_key(session, parts[0])
    return None


def _for_reader(report: Report, key: str) -> Report:
    """A finding that names no address (non-standard text) is about the reader."""
    moved = [
        dataclasses.replace(f, recipient=key) if not f.recipient else f for f in report.findings
    ]
    return dataclasses.replace(report, findings=moved)


def _verp_delivery(
    session: Session, report: Report, verp: VerpCodec | None
) -> tuple[Delivery | None, str]:
    """The delivery a report's VERP address names, and a note; ``(None, "")`` without one."""
    if verp is None:
        return None, ""
    read = [(a, r) for a in report.addressed_to if (r := verp.read(a)) is not None]
    if not read:
        return None, ""
    genuine = [(a, delivery_id) for a, (delivery_id, ok) in read if ok]
    if not genuine:
        return None, f"forged VERP address {read[0][0]}: ignored, nothing changed"
    address, delivery_id = genuine[0]
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        return None, f"VERP address {address} names no delivery: ignored, nothing changed"
    return delivery, f"VERP delivery {delivery_id}"


def _for_delivery(session: Session, report: Report, delivery: Delivery) -> Report:
    """The report's findings as findings about the delivery's subscriber."""
    sub = session.get(Subscriber, delivery.subscriber_id)
    if sub is None:
        return report
    key = sub.email_key
    findings = report.findings
    if not findings and report.loose is not None and report.kind == "other":
        findings = [report.loose]
    moved = [
        dataclasses.replace(
            f,
            recipient=key,
            reason=f.reason if f.recipient in ("", key) else f"{f.reason} (for {f.recipient})",
        )
        for f in findings
    ]
    kind = "bounce" if report.kind == "other" and moved else report.kind
    return dataclasses.replace(report, kind=kind, findings=moved)


def _apply(
    session: Session,
    report: Report,
    *,
    bounce_limit: int,
    summary: IngestSummary,
    now: dt.datetime,
    issue_id: int | None,
    delivery: Delivery | None,
    believe: frozenset[str] | None,
) -> None:
    if report.kind in ("other", "auto-reply") or (
        report.kind != "unsubscribe" and not report.findings
    ):
        summary.not_reports += 1
        summary.auto_replies += report.kind == "auto-reply"
        return
    delivery_id = delivery.id if delivery is not None else None
    if _seen(session, report.message_id):
        summary.already_seen += 1
        return
    acting = (BounceKind.HARD, BounceKind.COMPLAINT, BounceKind.OPT_OUT)
    keys = list(dict.fromkeys([f.recipient for f in report.findings] + report.unsubscribed))
    found = {
        s.email_key: s
        for s in session.scalars(select(Subscriber).where(Subscriber.email_key.in_(keys)))
    }

    def believed(key: str) -> bool:
        return believe is None or key in believe

    untrusted = [f for f in report.findings if not believed(f.recipient)]
    summary.untrusted += bool(untrusted)
    summary.unknown_recipients += sum(
        1
        for k in report.recipients(*acting) + report.unsubscribed
        if k not in found and believed(k)
    )
    if issue_id is not None:
        summary.issue_ids.add(issue_id)
    for finding in report.findings:
        summary.kinds[finding.kind.value] += 1
        summary.soft_bounces += finding.kind in (BounceKind.SOFT, BounceKind.EXPIRED)
        sub = found.get(finding.recipient)
        _record(
            session,
            finding,
            sub,
            report.message_id,
            now,
            issue_id,
            delivery_id=delivery_id,
            trusted=believed(finding.recipient),
        )
    hard_ids = [found[k].id for k in report.hard if k in found and believed(k)]
    summary.hard_bounces += len(hard_ids)
    detail = next((f"{f.status} {f.reason}".strip() for f in report.findings), "bounce report")
    summary.newly_bounced += note_bounce(
        session, hard_ids, limit=bounce_limit, detail=detail[:500] or "bounce report"
    )
    for key in report.complained:  # complaints, then ARF opt-outs: the reader's own wish
        sub = found.get(key)
        if sub is not None and believed(key):
            summary.complaints += complain(
                session, sub, source="bounces", detail="feedback report", now=now
            )
    for key in report.recipients(BounceKind.OPT_OUT):
        sub = found.get(key)
        if sub is not None and believed(key):
            summary.unsubscribes += unsubscribe(
                session, sub, source="arf", detail="feedback report: opt-out", now=now
            )
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
        found = _issue_of_key(session, parts[0]) if parts is not None else None
        if found is not None:
            return found
    return None


def _issue_of_key(session: Session, key: str) -> int | None:
    """The issue a Message-ID's key names: a send week, or an issue id (None: a confirmation)."""
    try:
        week = dt.date.fromisoformat(key)
    except ValueError:
        query = select(Issue.id).where(Issue.id == int(key)) if key.isdigit() else None
    else:
        query = select(Issue.id).where(Issue.send_week == week)
    found = session.scalar(query) if query is not None else None
    return int(found) if found is not None else None


def _record(
    session: Session,
    f: Finding,
    sub: Subscriber | None,
    message_id: str,
    now: dt.datetime,
    issue_id: int | None = None,
    *,
    delivery_id: int | None = None,
    trusted: bool = True,
) -> None:
    session.add(
        BounceEvent(
            at=now,
            kind=f.kind.value,
            subscriber_id=sub.id if sub is not None else None,
            issue_id=issue_id,
            delivery_id=delivery_id,
            recipient=f.recipient[:320],
            domain=f.domain[:255],
            status=f.status[:20],
            code=f.code,
            reason=f.reason,
            source=f.source.value,
            message_id=message_id[:998],
            trusted=trusted,
        )
    )
