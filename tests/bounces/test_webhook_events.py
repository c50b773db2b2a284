"""The providers' event shapes as findings: types map to our classes, and the ties to our
messages (a Message-ID shaped like ours, a VERP address) are found wherever the event has them."""

from __future__ import annotations

from typing import Any

import pytest

from weekly_mailer.bounces.webhooks import events
from weekly_mailer.store.bounce_models import BounceKind

OURS = "<wm.2026-11-11.7.0123456789abcdef@example.org>"


def _mailgun(severity: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "event": "failed", "severity": severity, "reason": reason, "recipient": "Ann@X.org",
        "delivery-status": {"code": 550, "message": message},
        "message": {"headers": {"message-id": OURS.strip("<>")}},
        "envelope": {"sender": "bounces+12-abcdefgh@example.org"},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("severity", "reason", "message", "want"),
    [
        ("permanent", "bounce", "5.1.1 The email account does not exist", BounceKind.HARD),
        ("permanent", "bounce", "", BounceKind.HARD),
        ("permanent", "espblock", "", BounceKind.BLOCK),
        ("permanent", "suppress-unsubscribe", "", BounceKind.OPT_OUT),
        ("permanent", "bounce", "5.7.1 blocked by Spamhaus", BounceKind.BLOCK),
        ("temporary", "generic", "4.2.2 mailbox full", BounceKind.SOFT),
        ("temporary", "generic", "5.1.1 user unknown", BounceKind.SOFT),
    ],
)
def test_mailgun(severity: str, reason: str, message: str, want: BounceKind) -> None:
    event = events.mailgun_event("tok", _mailgun(severity, reason, message))
    (finding,) = event.findings
    assert (finding.kind, finding.recipient) == (want, "ann@x.org")
    assert event.message_ids == [OURS]
    assert event.envelopes == ["bounces+12-abcdefgh@example.org"]


def test_mailgun_complaint_and_other_events() -> None:
    (finding,) = events.mailgun_event("t", {"event": "complained", "recipient": "b@x.org"}).findings
    assert finding.kind is BounceKind.COMPLAINT
    assert events.mailgun_event("t", {"event": "delivered", "recipient": "b@x.org"}).findings == []


@pytest.mark.parametrize(
    ("kind", "details", "want"),
    [
        ("HardBounce", "smtp;550 5.1.1 no such user", BounceKind.HARD),
        ("HardBounce", "smtp;550 5.7.1 blocked as spam", BounceKind.BLOCK),
        ("SoftBounce", "smtp;550 5.1.1 no such user", BounceKind.SOFT),
        ("Blocked", "", BounceKind.BLOCK),
        ("SpamComplaint", "", BounceKind.COMPLAINT),
        ("Unsubscribe", "", BounceKind.OPT_OUT),
    ],
)
def test_postmark(kind: str, details: str, want: BounceKind) -> None:
    data = {"RecordType": "Bounce", "ID": 42, "Type": kind, "Email": "c@x.org", "Details": details,
            "Content": f"Message-ID: {OURS}\r\n"}  # fmt: skip
    event = events.postmark_event(data)
    assert [f.kind for f in event.findings] == [want]
    assert event.event_id == "Bounce:42" and event.message_ids == [OURS]


def test_postmark_auto_reply_finds_nothing() -> None:
    data = {"RecordType": "Bounce", "ID": 43, "Type": "AutoResponder", "Email": "c@x.org"}
    assert events.postmark_event(data).findings == []


def test_sendgrid_batch() -> None:
    batch = [
        {"event": "bounce", "type": "blocked", "email": "a@x.org", "sg_event_id": "1",
         "reason": "550 blocked", "smtp-id": OURS},
        {"event": "bounce", "type": "bounce", "email": "a@x.org", "sg_event_id": "2",
         "status": "5.1.1", "reason": "550 5.1.1 user unknown"},
        {"event": "dropped", "email": "a@x.org", "sg_event_id": "3", "reason": "Bounced Address"},
        {"event": "dropped", "email": "a@x.org", "sg_event_id": "4",
         "reason": "Unsubscribed Address"},
        {"event": "deferred", "email": "a@x.org", "sg_event_id": "5"},
        {"event": "spamreport", "email": "a@x.org", "sg_event_id": "6"},
        {"event": "open", "email": "a@x.org", "sg_event_id": "7"},
    ]  # fmt: skip
    found = [[f.kind for f in e.findings] for e in events.sendgrid_events(batch)]
    assert found == [
        [BounceKind.BLOCK], [BounceKind.HARD], [BounceKind.HARD], [BounceKind.OPT_OUT],
        [BounceKind.SOFT], [BounceKind.COMPLAINT], [],
    ]  # fmt: skip
    with pytest.raises(events.PayloadError):
        events.sendgrid_events({"event": "bounce"})
    with pytest.raises(events.PayloadError):
        events.sendgrid_events([{"event": "bounce"}])
