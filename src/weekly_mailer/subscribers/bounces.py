"""Bounce and complaint reports: RFC 3464 delivery status notifications and RFC 5965 (ARF).

A permanent failure (``Action: failed`` with a ``5.x.x`` status) counts one hard bounce for the
recipient (``bounce_limit`` of them make the subscriber ``bounced``); a complaint
(``Feedback-Type: abuse``) makes the subscriber ``complained`` at once. Temporary failures
(``4.x.x``, ``delayed``) change nothing. A message sent to ``unsubscribe_mailto`` (the
``mailto:`` of List-Unsubscribe) unsubscribes its sender.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from email.message import Message
from email.utils import getaddresses

from sqlalchemy import select
from sqlalchemy.orm import Session

from weekly_mailer.store.models import Subscriber
from weekly_mailer.subscribers import complain, note_bounce, unsubscribe

_ADDR = re.compile(r"^\s*(?:rfc822\s*;)?\s*<?([^<>\s;]+@[^<>\s;]+?)>?\s*$", re.IGNORECASE)


@dataclasses.dataclass
class Report:
    """What one message said."""

    kind: str  # "bounce", "complaint", "unsubscribe" or "other"
    hard: list[str] = dataclasses.field(default_factory=list)  # permanently failed recipients
    soft: list[str] = dataclasses.field(default_factory=list)
    complained: list[str] = dataclasses.field(default_factory=list)
    unsubscribed: list[str] = dataclasses.field(default_factory=list)
    detail: str = ""


def _address(value: str | None) -> str | None:
    if not value:
        return None
    m = _ADDR.match(str(value))
    return m.group(1).lower() if m else None


def _fields(part: Message) -> list[Message]:
    """The field blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    raw = part.get_payload(decode=True)
    text = raw if isinstance(raw, bytes) else b""
    blocks = re.split(rb"\r?\n\r?\n", text)
    return [email.message_from_bytes(b + b"\n") for b in blocks if b.strip()]


def parse_report(data: bytes, *, unsubscribe_address: str = "") -> Report:
    """Read one bounce/complaint message, or an unsubscribe request sent to
    ``unsubscribe_address`` (the ``mailto:`` in List-Unsubscribe). Anything else is "other"."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    report = Report(kind="other")
    if unsubscribe_address and _is_unsubscribe_request(msg, unsubscribe_address):
        senders = [a.lower() for _, a in getaddresses(msg.get_all("From", [])) if "@" in a]
        return Report(kind="unsubscribe", unsubscribed=senders[:1])
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            report.kind = "bounce"
            for block in _fields(part)[1:] or _fields(part):
                rcpt = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
                action = (block.get("Action") or "").strip().lower()
                status = (block.get("Status") or "").strip()
                if rcpt is None:
                    continue
                diagnostic = " ".join((block.get("Diagnostic-Code") or "").split())
                if action == "failed" and status.startswith("5"):
                    report.hard.append(rcpt)
                    report.detail = f"{status} {diagnostic}".strip()[:500]
                elif action in ("failed", "delayed"):
                    report.soft.append(rcpt)
        elif ctype == "message/feedback-report":
            report.kind = "complaint"
            rcpts: list[str] = []
            for block in _fields(part):
                rcpt = _address(block.get("Original-Rcpt-To"))
                if rcpt:
                    rcpts.append(rcpt)
            if not rcpts:
                rcpts = _original_recipients(msg)
            report.complained.extend(rcpts)
    return report


def _is_unsubscribe_request(msg: Message, unsubscribe_address: str) -> bool:
    if msg.get_content_type() == "multipart/report":
        return False  # a bounce of our own mail to that address is not a request
    target = getaddresses([unsubscribe_address])[0][1].lower()
    headers = msg.get_all("To", []) + msg.get_all("Cc", []) + msg.get_all("Delivered-To", [])
    return any(a.lower() == target for _, a in getaddresses(headers))


def _original_recipients(msg: Message) -> list[str]:
    for part in msg.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                inner = payload[0]
            else:
                raw = part.get_payload(decode=True)
                inner = email.message_from_bytes(raw if isinstance(raw, bytes) else b"")
            return [a.lower() for _, a in getaddresses(inner.get_all("To", [])) if "@" in a]
    return []


@dataclasses.dataclass
class IngestSummary:
    messages: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    newly_bounced: int = 0
    complaints: int = 0
    unsubscribes: int = 0
    unknown_recipients: int = 0
    not_reports: int = 0


def apply_report(
    session: Session, report: Report, *, bounce_limit: int, summary: IngestSummary
) -> None:
    """Apply one report to the subscribers it names."""
    summary.messages += 1
    if report.kind == "other":
        summary.not_reports += 1
        return
    summary.soft_bounces += len(report.soft)
    keys = report.hard + report.complained + report.unsubscribed
    found = {
        s.email_key: s
        for s in session.scalars(select(Subscriber).where(Subscriber.email_key.in_(keys)))
    }
    summary.unknown_recipients += sum(1 for k in set(keys) if k not in found)
    hard_ids = [found[k].id for k in dict.fromkeys(report.hard) if k in found]
    summary.hard_bounces += len(hard_ids)
    summary.newly_bounced += note_bounce(
        session, hard_ids, limit=bounce_limit, detail=report.detail or "bounce report"
    )
    for key in dict.fromkeys(report.complained):
        sub = found.get(key)
        if sub is not None and complain(session, sub, source="bounces", detail="feedback report"):
            summary.complaints += 1
    for key in dict.fromkeys(report.unsubscribed):
        sub = found.get(key)
        if sub is not None and unsubscribe(
            session, sub, source="mailto", detail="List-Unsubscribe mailto request"
        ):
            summary.unsubscribes += 1
    session.flush()
