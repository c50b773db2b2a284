"""A provider's verified event as findings (:class:`Event`), and what ties it to a message of
ours: every string in the event that is shaped like our Message-ID or could be a VERP address
(the envelope sender SES and Mailgun report, the original message's headers, a bounce dump).

The mapping of each provider's types to our classes is here (SES's is :mod:`.ses`): the
diagnostic the provider quotes decides through the one classifier when it says something; the
provider's own type decides otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from weekly_mailer.bounces.classify import classify
from weekly_mailer.bounces.report_reader import Finding
from weekly_mailer.bounces.webhooks import ses
from weekly_mailer.compose import find_message_ids
from weekly_mailer.store.bounce_models import BounceKind, BounceSource

_ADDRESS = re.compile(r"[A-Za-z0-9._%+=-]+\+\d{1,18}-[a-z0-9]+@[A-Za-z0-9.-]+")
MAX_STRINGS = 2000  # strings of one event looked at for ties (a bounce dump can be long)


class PayloadError(ValueError):
    """A verified request whose body is not the provider's event shape."""


@dataclasses.dataclass(frozen=True)
class Event:
    """One provider event: its id (what makes it applied once), its findings, and the
    candidate ties to our messages found in it."""

    event_id: str
    findings: list[Finding]
    message_ids: list[str] = dataclasses.field(default_factory=list)
    envelopes: list[str] = dataclasses.field(default_factory=list)
    # The provider's own id of the event when ``event_id`` is something else (Mailgun's token):
    # a redelivery under a new token then records nothing twice (intake's already seen).
    report_id: str = ""


def ties(payload: object) -> tuple[list[str], list[str]]:
    """Our-shaped Message-IDs (``<…>``) and VERP-shaped addresses anywhere in ``payload``."""
    ids: dict[str, None] = {}
    addresses: dict[str, None] = {}
    for n, text in enumerate(_strings(payload)):
        if n >= MAX_STRINGS:
            break
        ids.update(dict.fromkeys(find_message_ids(text)))
        for m in _ADDRESS.finditer(text):
            addresses[m.group(0)] = None
    return list(ids)[:20], list(addresses)[:20]


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _event(
    event_id: str, findings: list[Finding], payload: object, *, report_id: str = ""
) -> Event:
    ids, envelopes = ties(payload)
    found = [f for f in findings if f.recipient]
    return Event(str(event_id)[:300], found, ids, envelopes, report_id=report_id[:300])


def _address(value: object) -> str:
    return str(value or "").strip().strip("<>").lower()[:320]


def _classified(status: str, text: str, fallback: BounceKind) -> tuple[BounceKind, str, int | None]:
    """The classifier's word on the provider's diagnostic; the provider's type without one."""
    if not (status or text.strip()):
        return fallback, "", None
    c = classify(status, text=text)
    kind = BounceKind(c.kind.value) if c.kind.value != "unknown" else fallback
    return kind, c.status, c.code


def json_body(body: bytes) -> Any:
    """The request body as JSON; :class:`PayloadError` when it is not."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError("the body is not JSON") from exc


# --- Amazon SES (the JSON in an SNS Notification's Message) ---------------------------------


def ses_event(message_id: str, message: str) -> Event:
    """An SNS notification's SES event (no findings when it is not a bounce or complaint)."""
    try:
        notification = json.loads(message)
    except ValueError:
        return Event(message_id[:300], [])
    if not isinstance(notification, Mapping):
        return Event(message_id[:300], [])
    return _event(message_id, ses.findings(notification), notification.get("mail") or {})


# --- Mailgun (event-data of a webhook) --------------------------------------------------------

_MAILGUN_REASON: dict[str, BounceKind] = {
    "bounce": BounceKind.HARD,
    "suppress-bounce": BounceKind.HARD,
    "espblock": BounceKind.BLOCK,
    "suppress-complaint": BounceKind.OPT_OUT,  # they complained before: they want no mail
    "suppress-unsubscribe": BounceKind.OPT_OUT,
    "old": BounceKind.EXPIRED,
}


def mailgun_event(token: str, data: Mapping[str, Any]) -> Event:
    """A Mailgun ``failed`` or ``complained`` event (others: no findings). Its id is the
    signature's token, which is never accepted twice."""
    name = str(data.get("event", "")).lower()
    recipient = _address(data.get("recipient"))
    findings: list[Finding] = []
    if name == "complained":
        findings.append(
            Finding(recipient, BounceKind.COMPLAINT, reason="Mailgun complaint",
                    source=BounceSource.ARF)
        )  # fmt: skip
    elif name == "failed":
        status = data.get("delivery-status") or {}
        text = " ".join(str(status.get(k) or "") for k in ("message", "description")).strip()
        if text and status.get("code"):
            text = f"{status['code']} {text}"
        reason = str(data.get("reason") or "").lower()
        if str(data.get("severity", "")).lower() == "permanent":
            fallback = _MAILGUN_REASON.get(reason, BounceKind.UNKNOWN)
            kind, code_status, code = _classified(
                str(status.get("enhanced-code") or status.get("bounce-code") or ""), text,
                fallback,
            )  # fmt: skip
            if reason in ("suppress-complaint", "suppress-unsubscribe"):
                kind = fallback
        else:
            kind, code_status, code = _classified("", text, BounceKind.SOFT)
            kind = BounceKind.SOFT if kind is BounceKind.HARD else kind
        findings.append(
            Finding(recipient, kind, code_status, code, text[:500] or f"Mailgun {reason}")
        )
    payload = {"message": data.get("message"), "envelope": data.get("envelope")}
    return _event(token, findings, payload, report_id=str(data.get("id") or ""))


# --- Postmark (one bounce or spam complaint per request) --------------------------------------

_POSTMARK: dict[str, BounceKind | None] = {
    "HardBounce": BounceKind.HARD,
    "BadEmailAddress": BounceKind.HARD,
    "SoftBounce": BounceKind.SOFT,
    "Transient": BounceKind.SOFT,
    "DnsError": BounceKind.SOFT,
    "SpamNotification": BounceKind.BLOCK,
    "Blocked": BounceKind.BLOCK,
    "SpamComplaint": BounceKind.COMPLAINT,
    "Unsubscribe": BounceKind.OPT_OUT,
    "AutoResponder": None,
    "ChallengeVerification": None,
    "OpenRelayTest": None,
    "InboundError": None,
}


def postmark_event(data: Mapping[str, Any]) -> Event:
    """A Postmark ``Bounce`` or ``SpamComplaint`` record (others: no findings)."""
    record = str(data.get("RecordType", ""))
    event_id = f"{record}:{data.get('ID', '')}"
    if not data.get("ID"):
        raise PayloadError("no ID")
    recipient = _address(data.get("Email"))
    findings: list[Finding] = []
    name = str(data.get("Type", ""))
    if record == "SpamComplaint" or (record == "Bounce" and name == "SpamComplaint"):
        findings.append(
            Finding(recipient, BounceKind.COMPLAINT, reason="Postmark spam complaint",
                    source=BounceSource.ARF)
        )  # fmt: skip
    elif record == "Bounce":
        by_type = _POSTMARK.get(name, BounceKind.UNKNOWN)
        if by_type is not None:
            text = " ".join(str(data.get(k) or "") for k in ("Description", "Details")).strip()
            kind, status, code = _classified("", str(data.get("Details") or ""), by_type)
            if by_type in (BounceKind.SOFT, BounceKind.OPT_OUT):
                kind = by_type  # Postmark will retry, or the reader asked
            reason = f"Postmark {name}: {text}"[:500]
            findings.append(Finding(recipient, kind, status, code, reason))
    payload = {k: data.get(k) for k in ("MessageID", "Metadata", "Content", "Headers")}
    return _event(event_id, findings, payload)


# --- SendGrid (a batch of events per request) -------------------------------------------------

_SENDGRID_CLASS: dict[str, BounceKind] = {
    "invalid address": BounceKind.HARD,
    "technical": BounceKind.SOFT,
    "content": BounceKind.BLOCK,
    "reputation": BounceKind.BLOCK,
    "frequency or volume": BounceKind.BLOCK,
    "mailbox unavailable": BounceKind.UNKNOWN,
    "unclassified": BounceKind.UNKNOWN,
}
_SENDGRID_DROPPED: dict[str, BounceKind] = {
    "bounced address": BounceKind.HARD,
    "invalid": BounceKind.HARD,
    "unsubscribed address": BounceKind.OPT_OUT,
    "spam reporting address": BounceKind.OPT_OUT,
}


def sendgrid_events(payload: object) -> list[Event]:
    """SendGrid's batch (a JSON array): ``bounce``, ``dropped``, ``deferred`` and
    ``spamreport`` events have findings; others none. Each event's id is ``sg_event_id``."""
    if not isinstance(payload, list):
        raise PayloadError("not a list of events")
    events = []
    for data in payload:
        if not isinstance(data, Mapping) or not data.get("sg_event_id"):
            raise PayloadError("an event without sg_event_id")
        events.append(_sendgrid_event(data))
    return events


def _sendgrid_event(data: Mapping[str, Any]) -> Event:
    name = str(data.get("event", "")).lower()
    recipient = _address(data.get("email"))
    status, reason = str(data.get("status") or ""), str(data.get("reason") or "")
    findings: list[Finding] = []
    if name == "spamreport":
        findings.append(
            Finding(recipient, BounceKind.COMPLAINT, reason="SendGrid spam report",
                    source=BounceSource.ARF)
        )  # fmt: skip
    elif name == "bounce":
        bounce_class = str(data.get("bounce_classification") or "").lower()
        fallback = _SENDGRID_CLASS.get(bounce_class)
        if fallback is None:
            blocked = str(data.get("type", "")).lower() == "blocked"
            fallback = BounceKind.BLOCK if blocked else BounceKind.HARD
        kind, code_status, code = _classified(status, reason, fallback)
        findings.append(Finding(recipient, kind, code_status, code, reason[:500] or name))
    elif name == "dropped":
        kind = _SENDGRID_DROPPED.get(reason.lower(), BounceKind.UNKNOWN)
        findings.append(Finding(recipient, kind, reason=f"SendGrid dropped: {reason}"[:500]))
    elif name == "deferred":
        findings.append(Finding(recipient, BounceKind.SOFT, reason=reason[:500] or name))
    payload = {k: data.get(k) for k in ("smtp-id", "sg_message_id")}
    return _event(str(data["sg_event_id"]), findings, payload)
