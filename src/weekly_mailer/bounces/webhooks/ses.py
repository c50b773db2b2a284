"""Amazon SES bounce and complaint notifications (the JSON in an SNS ``Message``) as findings,
through the same classifier as bounce messages: the diagnostic SES quotes decides a bounce's
class when it says something; SES's own bounce type decides otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from weekly_mailer.bounces.classify import classify
from weekly_mailer.bounces.report_reader import Finding
from weekly_mailer.store.bounce_models import BounceKind, BounceSource

# SES bounceType/bounceSubType -> our class when the diagnostic does not decide.
_BY_TYPE: dict[tuple[str, str], BounceKind] = {
    ("Permanent", "General"): BounceKind.HARD,
    ("Permanent", "NoEmail"): BounceKind.HARD,
    ("Permanent", "Suppressed"): BounceKind.HARD,
    ("Permanent", "OnAccountSuppressionList"): BounceKind.HARD,
    ("Permanent", "UnsubscribedRecipient"): BounceKind.OPT_OUT,
    ("Transient", "General"): BounceKind.SOFT,
    ("Transient", "MailboxFull"): BounceKind.SOFT,
    ("Transient", "MessageTooLarge"): BounceKind.SOFT,
    ("Transient", "ContentRejected"): BounceKind.BLOCK,
    ("Transient", "AttachmentRejected"): BounceKind.BLOCK,
}
# complaintFeedbackType -> class (ARF's feedback types; none given means a complaint).
_COMPLAINTS: dict[str, BounceKind] = {
    "abuse": BounceKind.COMPLAINT,
    "fraud": BounceKind.COMPLAINT,
    "virus": BounceKind.COMPLAINT,
    "": BounceKind.COMPLAINT,
    "auth-failure": BounceKind.FEEDBACK,
    "not-spam": BounceKind.FEEDBACK,
    "other": BounceKind.FEEDBACK,
}


def findings(notification: Mapping[str, Any]) -> list[Finding]:
    """The findings of one SES notification (``Bounce`` or ``Complaint``; others: none)."""
    kind = notification.get("notificationType") or notification.get("eventType")
    if kind == "Bounce":
        return _bounce(notification.get("bounce") or {})
    if kind == "Complaint":
        return _complaint(notification.get("complaint") or {})
    return []


def _bounce(bounce: Mapping[str, Any]) -> list[Finding]:
    pair = (str(bounce.get("bounceType", "")), str(bounce.get("bounceSubType", "")))
    by_type = _BY_TYPE.get(pair)
    if by_type is None:
        by_type = BounceKind.UNKNOWN if pair[0] == "Undetermined" else BounceKind.SOFT
        by_type = BounceKind.HARD if pair[0] == "Permanent" else by_type
    out = []
    for r in bounce.get("bouncedRecipients") or []:
        text = str(r.get("diagnosticCode") or "")
        c = classify(str(r.get("status") or ""), text=text)
        kind = BounceKind(c.kind.value) if c.kind.value != "unknown" else by_type
        if pair[0] == "Transient" and kind is BounceKind.HARD:
            kind = BounceKind.SOFT  # SES says it will not retry, not that the mailbox is gone
        reason = c.reason or f"SES {pair[0]}/{pair[1]}"
        out.append(Finding(str(r.get("emailAddress", "")).lower(), kind, c.status, c.code, reason))
    return out


def _complaint(complaint: Mapping[str, Any]) -> list[Finding]:
    feedback = str(complaint.get("complaintFeedbackType") or "").lower()
    kind = _COMPLAINTS.get(feedback, BounceKind.FEEDBACK)
    reason = f"SES complaint: {feedback or 'no feedback type'}"
    return [
        Finding(
            str(r.get("emailAddress", "")).lower(), kind, reason=reason, source=BounceSource.ARF
        )
        for r in complaint.get("complainedRecipients") or []
    ]
