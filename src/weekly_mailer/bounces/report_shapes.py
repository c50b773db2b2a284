"""Reports in the shapes providers send them that are not RFC 3464 or RFC 5965 parts. Pure.

- Amazon SES notifications mailed by SNS (``AWS Notification Message``: a JSON ``Bounce`` or
  ``Complaint`` in a text body, folded with ``!`` + newline + space).
- Microsoft's JMRP complaints: a ``multipart/mixed`` of one ``message/rfc822`` whose headers
  carry ``X-HmXmrOriginalRecipient`` (the reader who pressed "junk").
- ARF feedback fields sent as a ``text/plain`` part (``Feedback-Type:`` …) instead of
  ``message/feedback-report``.
- Vendor fields in a DSN that say how the sending MTA read the reply (PowerMTA's
  ``X-PowerMTA-BounceCategory``).
- Mail clients' one-click unsubscribe mail (Apple Mail's ``X-Apple-Unsubscribe: true``).
- Auto-replies (RFC 3834 ``Auto-Submitted``, ``X-Autoreply``, vacation subjects).

Each function returns None when the message is not of its shape.
"""

from __future__ import annotations

import email
import json
import re
from email.message import Message
from typing import Any

from weekly_mailer.bounces.classify import Kind, classify, one_line, uncomment
from weekly_mailer.store.bounce_models import BounceKind

COMPLAINT_TYPES = {"abuse", "fraud", "virus"}
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[- ]?(reply|response|antwort)|auto:|out of (the )?office|vacation"
    r"|away from|abwesenheit|absence|r[ée]ponse automatique)",
    re.IGNORECASE,
)


def feedback_kind(feedback_type: str) -> BounceKind:
    """An ARF ``Feedback-Type`` (or a provider's complaint type) as our kind: abuse, fraud and
    virus (and no type at all: RFC 5965 reports are complaints by default) are complaints."""
    value = feedback_type.strip().lower()
    if value in COMPLAINT_TYPES or not value:
        return BounceKind.COMPLAINT
    if value in ("opt-out", "optout"):
        return BounceKind.OPT_OUT
    return BounceKind.FEEDBACK


def ses_notification(msg: Message) -> tuple[str, list[tuple[str, BounceKind, str, str]]] | None:
    """An SES notification mailed by SNS: ("bounce" or "feedback", [(recipient, kind, status,
    reason)]). Deliveries and anything else: None."""
    if msg.is_multipart() or msg.get_content_type() != "text/plain":
        return None
    raw = msg.get_payload(decode=True)
    text = (
        raw.decode(msg.get_content_charset() or "utf-8", "replace")
        if isinstance(raw, bytes)
        else ""
    )
    start = text.find("{")
    if start < 0 or not re.search(r'"(notificationType|eventType|Type)"\s*:', text):
        return None
    try:
        data, _ = json.JSONDecoder().raw_decode(re.sub(r"!?\r?\n ", "", text[start:]))
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("Type") == "Notification":  # the SNS envelope
        try:
            data = json.loads(str(data.get("Message") or ""))
        except ValueError:
            return None
    if not isinstance(data, dict):
        return None
    kind = str(data.get("notificationType") or data.get("eventType") or "")
    if kind == "Bounce":
        return "bounce", _ses_bounce(data.get("bounce") or {})
    if kind == "Complaint":
        complaint = data.get("complaint") or {}
        found = feedback_kind(str(complaint.get("complaintFeedbackType") or ""))
        reason = one_line(f"feedback report: {complaint.get('complaintFeedbackType') or 'no type'}"
                          f" {complaint.get('userAgent') or 'Amazon SES'}")  # fmt: skip
        rcpts = _ses_addresses(complaint.get("complainedRecipients"))
        return "feedback", [(r, found, "", reason) for r in rcpts]
    return None


def _ses_bounce(bounce: dict[str, Any]) -> list[tuple[str, BounceKind, str, str]]:
    found = []
    transient = str(bounce.get("bounceType") or "") != "Permanent"
    for item in bounce.get("bouncedRecipients") or []:
        if not isinstance(item, dict) or not _ADDRESS.match(str(item.get("emailAddress") or "")):
            continue
        diagnostic = re.sub(
            r"^\s*smtp\s*;\s*", "", str(item.get("diagnosticCode") or ""), flags=re.I
        )
        sub_type = str(bounce.get("bounceSubType") or "")
        c = classify(str(item.get("status") or ""), None, diagnostic or sub_type)
        kind = c.kind
        if sub_type in ("NoEmail",) and kind is Kind.UNKNOWN:
            kind = Kind.HARD
        if transient and kind in (Kind.HARD, Kind.UNKNOWN):
            kind = Kind.SOFT
        found.append(
            (str(item["emailAddress"]).lower(), BounceKind(kind.value), c.status, c.reason)
        )
    return found


def _ses_addresses(items: Any) -> list[str]:
    found = [str(i.get("emailAddress") or "") for i in items or [] if isinstance(i, dict)]
    return [a.lower() for a in found if _ADDRESS.match(a)]


# PowerMTA's own reading of the reply, in each recipient's DSN block (its bounce categories).
_POWERMTA = {
    "bad-mailbox": Kind.HARD,
    "bad-domain": Kind.HARD,
    "inactive-mailbox": Kind.SOFT,
    "quota-issues": Kind.SOFT,
    "message-expired": Kind.EXPIRED,
    "spam-related": Kind.BLOCK,
    "policy-related": Kind.BLOCK,
    "virus-related": Kind.BLOCK,
    "content-related": Kind.BLOCK,
    "invalid-sender": Kind.BLOCK,
}


def vendor_category(block: Message) -> Kind | None:
    """The sending MTA's own class of a failure, when its DSN carries one
    (``X-PowerMTA-BounceCategory: bad-mailbox``); None when absent or saying nothing."""
    value = uncomment(block.get("X-PowerMTA-BounceCategory") or "").lower()
    return _POWERMTA.get(value)


def jmrp_recipients(msg: Message) -> list[str] | None:
    """Microsoft JMRP: the enclosed message's ``X-HmXmrOriginalRecipient``; None otherwise."""
    if msg.get_content_type() != "multipart/mixed":
        return None
    for part in msg.get_payload() if isinstance(msg.get_payload(), list) else []:
        if not isinstance(part, Message) or part.get_content_type() != "message/rfc822":
            continue
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            found = [
                str(v).strip().lower() for v in inner[0].get_all("X-HmXmrOriginalRecipient", [])
            ]
            found = [a for a in found if _ADDRESS.match(a)]
            if found:
                return found
    return None


def text_feedback_fields(part: Message) -> Message | None:
    """A ``text/plain`` part of a ``multipart/report`` that holds ARF fields, as fields."""
    if part.get_content_type() != "text/plain":
        return None
    raw = part.get_payload(decode=True)
    text = raw if isinstance(raw, bytes) else b""
    if not re.search(rb"^Feedback-Type:", text, re.MULTILINE | re.IGNORECASE):
        return None
    fields = email.message_from_bytes(text.lstrip())
    return fields if fields.get("Feedback-Type") else None


def client_unsubscribe(msg: Message) -> bool:
    """A mail client's own unsubscribe message (Apple Mail: ``X-Apple-Unsubscribe: true``)."""
    return str(msg.get("X-Apple-Unsubscribe") or "").strip().lower() == "true"


def is_auto_reply(msg: Message, *, replies_only: bool = False) -> bool:
    """RFC 3834 and the common vendor marks. ``replies_only``: only the marks no bounce carries
    (``X-Autoreply``, an "Automatic reply" subject), not ``Auto-Submitted``."""
    auto = uncomment(msg.get("Auto-Submitted") or "").lower()
    precedence = str(msg.get("Precedence") or "").strip().lower()
    if precedence in ("auto_reply", "auto-reply"):
        return True
    if any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond")):
        return True
    if not replies_only and (
        (auto and auto != "no") or msg.get("X-Auto-Response-Suppress") is not None
    ):
        return True  # Exim's bounces say auto-replied too: only after the bounce checks
    return bool(_AUTO_SUBJECT.search(str(msg.get("Subject") or "")))
