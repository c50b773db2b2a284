"""SES bounce types and complaint feedback types map to our classes."""

from __future__ import annotations

import pytest

from weekly_mailer.bounces.webhooks import ses
from weekly_mailer.store.bounce_models import BounceKind, BounceSource


def _bounce(kind: str, sub: str, diagnostic: str = "", status: str = "") -> dict[str, object]:
    rcpt = {"emailAddress": "Ann@Example.org", "diagnosticCode": diagnostic, "status": status}
    return {
        "notificationType": "Bounce",
        "bounce": {"bounceType": kind, "bounceSubType": sub, "bouncedRecipients": [rcpt]},
    }


@pytest.mark.parametrize(
    ("kind", "sub", "diagnostic", "want"),
    [
        ("Permanent", "General", "smtp; 550 5.1.1 user unknown", BounceKind.HARD),
        ("Permanent", "NoEmail", "", BounceKind.HARD),
        ("Permanent", "Suppressed", "", BounceKind.HARD),
        ("Permanent", "OnAccountSuppressionList", "", BounceKind.HARD),
        ("Transient", "MailboxFull", "", BounceKind.SOFT),
        ("Transient", "General", "smtp; 550 5.1.1 user unknown", BounceKind.SOFT),
        ("Permanent", "General", "550 5.7.1 blocked by Spamhaus", BounceKind.BLOCK),
        ("Undetermined", "Undetermined", "", BounceKind.UNKNOWN),
    ],
)
def test_bounce_types(kind: str, sub: str, diagnostic: str, want: BounceKind) -> None:
    (finding,) = ses.findings(_bounce(kind, sub, diagnostic))
    assert finding.kind is want
    assert finding.recipient == "ann@example.org"


@pytest.mark.parametrize(
    ("feedback", "want"),
    [
        ("abuse", BounceKind.COMPLAINT),
        (None, BounceKind.COMPLAINT),
        ("not-spam", BounceKind.FEEDBACK),
    ],
)
def test_complaint_types(feedback: str | None, want: BounceKind) -> None:
    complaint = {"complainedRecipients": [{"emailAddress": "bob@example.org"}]}
    if feedback:
        complaint["complaintFeedbackType"] = feedback
    (finding,) = ses.findings({"notificationType": "Complaint", "complaint": complaint})
    assert (finding.kind, finding.source, finding.recipient) == (
        want,
        BounceSource.ARF,
        "bob@example.org",
    )


def test_delivery_notifications_find_nothing() -> None:
    assert ses.findings({"notificationType": "Delivery", "delivery": {}}) == []
