"""Reading what MTAs really send: one message in, a :class:`Report` out. Pure: no database.

- RFC 3464 delivery status notifications (``message/delivery-status``): one finding per failed
  or delayed recipient, classified by :mod:`weekly_mailer.bounces.classify`.
- Text and legacy bounces (qmail, older Exim, Sendmail, Postfix without DSN, Exchange, Yahoo,
  OpenSMTPD…): ``flufl.bounce`` finds the failed addresses, the diagnostic next to each address
  gives the reason.
- RFC 5965 feedback reports (ARF): ``abuse``, ``fraud``, ``virus`` are complaints, ``opt-out``
  unsubscribes, anything else (``auth-failure``, ``not-spam``…) is only recorded.
- Auto-replies (RFC 3834 ``Auto-Submitted``, ``X-Autoreply``, ``Precedence: auto_reply``,
  vacation subjects) and anything else: no finding.

Every report also carries the addresses it was delivered to (``Delivered-To``,
``X-Original-To``, ``Envelope-To``, ``To``…): a VERP address there ties it to one delivery
(``bounces.intake``), and a bounce whose body names nobody we can read still gets a
``loose`` finding (its text classified) for that delivery's subscriber.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import logging
import re
from email.message import Message
from email.utils import getaddresses

from flufl.bounce import all_failures

from weekly_mailer.bounces.classify import Kind, classify, one_line
from weekly_mailer.store.bounce_models import BounceKind, BounceSource

log = logging.getLogger(__name__)
_ADDR = re.compile(r"^\s*(?:rfc822\s*;)?\s*<?([^<>\s;]+@[^<>\s;]+?)>?\s*$", re.IGNORECASE)
_COMPLAINTS = {"abuse", "fraud", "virus"}
_BOUNCE_FROM = re.compile(r"mailer-daemon|postmaster|mail delivery (subsystem|system)", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|failed|has failed|problem)"
    r"|returned mail|mail delivery failed|failure notice|could not be delivered|non[- ]?delivery"
    r"|delivery report|returned to sender|mail system error",
    re.IGNORECASE,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[- ]?(reply|response|antwort)|auto:|out of (the )?office|vacation"
    r"|away from|abwesenheit|absence|r[ée]ponse automatique)",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True)
class Finding:
    """What one report said about one recipient."""

    recipient: str
    kind: BounceKind
    status: str = ""
    code: int | None = None
    reason: str = ""
    source: BounceSource = BounceSource.DSN

    @property
    def domain(self) -> str:
        return self.recipient.rpartition("@")[2]


@dataclasses.dataclass
class Report:
    """What one message said."""

    kind: str  # "bounce", "feedback", "unsubscribe", "auto-reply" or "other"
    findings: list[Finding] = dataclasses.field(default_factory=list)
    unsubscribed: list[str] = dataclasses.field(default_factory=list)  # List-Unsubscribe mailto
    message_id: str = ""
    subject: str = ""
    addressed_to: list[str] = dataclasses.field(default_factory=list)  # envelope recipients
    loose: Finding | None = None  # a bounce naming no address: its text, for a VERP delivery
    # Message-IDs shaped like ours (compose.links) that the report quotes: the original message's
    # own, References… Checked against secret_key where they are used (subscribers.bounces).
    original_ids: list[str] = dataclasses.field(default_factory=list)

    def recipients(self, *kinds: BounceKind) -> list[str]:
        return list(dict.fromkeys(f.recipient for f in self.findings if f.kind in kinds))

    @property
    def hard(self) -> list[str]:
        return self.recipients(BounceKind.HARD)

    @property
    def complained(self) -> list[str]:
        return self.recipients(BounceKind.COMPLAINT)


def _address(value: str | None) -> str | None:
    if not value:
        return None
    m = _ADDR.match(str(value))
    return m.group(1).lower() if m else None


_OUR_ID = re.compile(rb"<wm\.[A-Za-z0-9_-]+\.\d{1,18}\.[0-9a-f]{16}@[^<>\s]+>")


def _our_ids(data: bytes, *, own: str) -> list[str]:
    """Every Message-ID shaped like ours anywhere in the message, but the report's own."""
    found = (m.decode("ascii", "replace") for m in _OUR_ID.findall(data))
    return [i for i in dict.fromkeys(found) if i != own][:10]


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
    report = Report(
        kind="other",
        message_id=one_line(str(msg.get("Message-ID") or "")),
        subject=one_line(str(msg.get("Subject") or "")),
        addressed_to=_addressed_to(msg),
    )
    report.original_ids = _our_ids(data, own=report.message_id)
    if unsubscribe_address and _is_unsubscribe_request(msg, unsubscribe_address):
        senders = [a.lower() for _, a in getaddresses(msg.get_all("From", [])) if "@" in a]
        report.kind = "unsubscribe"
        report.unsubscribed = senders[:1]
        return report
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            report.kind = "bounce"
            report.findings.extend(_dsn_findings(part))
        elif ctype == "message/feedback-report":
            report.kind = "feedback"
            report.findings.extend(_arf_findings(part, msg))
    if report.kind != "other":
        return report
    if _looks_like_bounce(msg):
        report.findings = _legacy_findings(msg)
        if report.findings:
            report.kind = "bounce"
        else:
            c = classify(None, None, _body_text(msg))
            report.loose = Finding("", BounceKind(c.kind.value), c.status, c.code, c.reason)
    elif _is_auto_reply(msg):
        report.kind = "auto-reply"
    return report


_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")


def _addressed_to(msg: Message) -> list[str]:
    """Where the message was delivered: the envelope recipient headers a local delivery adds,
    and To (a DSN is addressed to the envelope sender it answers)."""
    values = [str(v) for h in _ENVELOPE_HEADERS for v in msg.get_all(h, [])]
    return list(dict.fromkeys(a.lower() for _, a in getaddresses(values) if "@" in a))


def _dsn_findings(part: Message) -> list[Finding]:
    found: list[Finding] = []
    blocks = _fields(part)
    for block in blocks[1:] or blocks:
        rcpt = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
        action = (block.get("Action") or "").strip().lower()
        if rcpt is None or action not in ("failed", "delayed"):
            continue  # delivered, relayed, expanded: not a failure
        diagnostic = str(block.get("Diagnostic-Code") or "")
        diagnostic = re.sub(r"^\s*(smtp|x-[\w-]+)\s*;\s*", "", diagnostic, flags=re.I)
        c = classify((block.get("Status") or "").strip(), None, diagnostic)
        kind = c.kind
        if action == "delayed" and kind in (Kind.HARD, Kind.UNKNOWN, Kind.EXPIRED):
            kind = Kind.SOFT  # a warning: the MTA is still trying
        elif action == "failed" and c.status.startswith("4") and kind is not Kind.BLOCK:
            kind = Kind.EXPIRED  # failed with a transient status: the MTA gave up retrying
        found.append(
            Finding(rcpt, BounceKind(kind.value), c.status, c.code, c.reason, BounceSource.DSN)
        )
    return found


def _arf_findings(part: Message, msg: Message) -> list[Finding]:
    rcpts: list[str] = []
    feedback_type = ""
    agent = ""
    for block in _fields(part):
        feedback_type = feedback_type or (block.get("Feedback-Type") or "").strip().lower()
        agent = agent or one_line(str(block.get("User-Agent") or block.get("Reporting-MTA") or ""))
        for field in ("Removal-Recipient", "Original-Rcpt-To"):
            rcpts += [a for a in (_address(v) for v in block.get_all(field, [])) if a]
    rcpts = list(dict.fromkeys(rcpts)) or _original_recipients(msg)
    if feedback_type in _COMPLAINTS:
        kind = BounceKind.COMPLAINT
    elif feedback_type in ("opt-out", "optout"):
        kind = BounceKind.OPT_OUT
    else:
        kind = BounceKind.FEEDBACK
    reason = one_line(f"feedback report: {feedback_type or 'no type'} {agent}")
    return [Finding(r, kind, reason=reason, source=BounceSource.ARF) for r in rcpts]


def _looks_like_bounce(msg: Message) -> bool:
    sender = str(msg.get("From") or "") + " " + str(msg.get("Return-Path") or "")
    if _BOUNCE_FROM.search(sender) or str(msg.get("Return-Path") or "").strip() == "<>":
        return True
    return bool(_BOUNCE_SUBJECT.search(str(msg.get("Subject") or "")))


def _is_auto_reply(msg: Message) -> bool:
    auto = str(msg.get("Auto-Submitted") or "").strip().lower()
    precedence = str(msg.get("Precedence") or "").strip().lower()
    if (auto and auto != "no") or precedence in ("auto_reply", "auto-reply"):
        return True
    if any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")):
        return True
    return bool(_AUTO_SUBJECT.search(str(msg.get("Subject") or "")))


def _body_text(msg: Message) -> str:
    """The text of the report itself: its text parts, up to the returned original message."""
    texts: list[str] = []
    stack = [msg]
    while stack:
        part = stack.pop(0)
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            continue  # the returned original: its addresses are not failures
        if part.is_multipart():
            payload = part.get_payload()
            stack[:0] = [p for p in payload if isinstance(p, Message)]
        elif part.get_content_type() == "text/plain" or part is msg:
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                texts.append(raw.decode(part.get_content_charset() or "utf-8", "replace"))
    lines = "\n".join(texts).splitlines()
    end = next((i for i, line in enumerate(lines) if _ORIGINAL.match(line)), len(lines))
    return "\n".join(lines[:end])


def _legacy_findings(msg: Message) -> list[Finding]:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # noqa: BLE001 - one odd message must not stop a whole mailbox
        log.warning("flufl.bounce could not read %s; reading its text only", msg.get("Message-ID"))
        temporary = permanent = frozenset()
    text = _body_text(msg)
    failed = [(a, False) for a in permanent] + [(a, True) for a in temporary]
    if not failed:
        failed = [(a.encode(), False) for a in _addresses_with_diagnostics(msg, text)]
    found: list[Finding] = []
    for raw, is_temporary in failed:
        rcpt = raw.decode("utf-8", "replace").strip("<>").lower()
        if "@" not in rcpt:
            continue
        c = classify(None, None, _diagnostic_near(text, rcpt))
        kind = c.kind
        if is_temporary and kind in (Kind.HARD, Kind.UNKNOWN):
            kind = Kind.SOFT
        found.append(
            Finding(rcpt, BounceKind(kind.value), c.status, c.code, c.reason, BounceSource.DSN)
        )
    return list({f.recipient: f for f in found}.values())


_WINDOW = 4  # lines after the address that still belong to it
_ORIGINAL = re.compile(
    r"^\s*(-+ ?(original message|this is a copy|below this line|the original message)"
    r"|below is a copy|received: |return-path: )",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[\w.+=-]+@[\w-]+(?:\.[\w-]+)+")


def _addresses_with_diagnostics(msg: Message, text: str) -> list[str]:
    """When flufl.bounce finds nothing: the addresses of the report's text that come with a
    status or reply code, other than the report's own sender and recipients."""
    own = {
        a.lower()
        for _, a in getaddresses(msg.get_all("From", []) + msg.get_all("To", []))
        if "@" in a
    }
    found: list[str] = []
    for address in dict.fromkeys(a.lower() for a in _EMAIL.findall(text)):
        if address in own or re.match(r"(mailer-daemon|postmaster)@", address):
            continue
        c = classify(None, None, _diagnostic_near(text, address))
        if c.status or c.code is not None:
            found.append(address)
    return found


def _diagnostic_near(text: str, address: str) -> str:
    """What the report says about ``address``: each line naming it and the few lines after
    (up to a blank line or another address)."""
    lines = text.splitlines()
    window: list[str] = []
    for i, line in enumerate(lines):
        if address not in line.lower():
            continue
        window.append(line)
        for nxt in lines[i + 1 : i + 1 + _WINDOW]:
            if not nxt.strip() or ("@" in nxt and address not in nxt.lower()):
                break
            window.append(nxt)
    text = " ".join(dict.fromkeys(window))
    return re.sub(re.escape(address), " ", text, flags=re.IGNORECASE)


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
