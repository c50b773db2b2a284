"""Reading what MTAs really send: one message in, a :class:`Report` out. Pure: no database.

- RFC 3464 delivery status notifications (``message/delivery-status``): one finding per failed
  or delayed recipient, classified by :mod:`weekly_mailer.bounces.classify`. Field comments
  (``Status: 5.1.1 (bad mailbox)``) are dropped; when the status is generic (``5.0.0``, none) and
  the diagnostic says nothing, the human-readable part's lines about the recipient decide, and
  the SMTP command they say was refused (``in reply to end of DATA command``, ``>>> DATA``,
  ``after MAIL FROM``) tells the classifier whether the recipient had been accepted. "No such
  user" words with no status beyond ``5.0.0`` are hard only when the refusal answered RCPT TO:
  the report says so, or the reply names the recipient (``550 <a@b>: User unknown``); else they
  are a filter's (``block``). A field block naming two recipients is read as two.
- Text and legacy bounces (qmail, older Exim, Sendmail, Postfix without DSN, Exchange, Yahoo,
  OpenSMTPD…): ``flufl.bounce`` finds the failed addresses, the diagnostic next to each address
  gives the reason.
- RFC 5965 feedback reports (ARF), with or without ``report-type``, the feedback part as
  ``message/feedback-report`` or as text: ``abuse``, ``fraud``, ``virus`` (and no type at all)
  are complaints, ``opt-out`` unsubscribes, anything else (``auth-failure``, ``not-spam``…) is
  only recorded. Provider shapes (SES notifications by mail, Microsoft JMRP, Apple Mail's
  unsubscribe) are read by :mod:`weekly_mailer.bounces.report_shapes`.
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

from weekly_mailer.bounces import report_parts as parts
from weekly_mailer.bounces import report_shapes as shapes
from weekly_mailer.bounces.classify import (
    Kind,
    classify,
    mailbox_state,
    one_line,
    rests_on_words,
    uncomment,
)
from weekly_mailer.bounces.report_text import command_of, diagnostic_near, names_recipient
from weekly_mailer.compose import find_message_ids
from weekly_mailer.store.bounce_models import BounceKind, BounceSource

log = logging.getLogger(__name__)
_ADDR = re.compile(r"^\s*(?:rfc822\s*;)?\s*<?([^<>\s;]+@[^<>\s;]+?)>?\s*$", re.IGNORECASE)
_BOUNCE_FROM = re.compile(r"mailer-daemon|post_?master|mail delivery (subsystem|system)", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|failed|has failed|problem)"
    r"|returned mail|mail delivery failed|failure notice|could not be delivered|non[- ]?delivery"
    r"|delivery report|returned to sender|mail system error",
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
    # A feedback report naming nobody, forwarded by a person who got the message unnamed
    # (report_parts.forwarded_by): the complainant it presumes, believed only as any report is.
    forwarded_by: str = ""

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
    m = _ADDR.match(uncomment(str(value)))
    return m.group(1).lower() if m else None


_MAILBOX = re.compile(r"<?[^@<>\s]+@[^@<>\s]+>?")  # not "@host" (a DSN's unreadable recipient)


def _our_ids(data: bytes, *, own: str) -> list[str]:
    """Every Message-ID shaped like ours anywhere in the message, but the report's own."""
    return [i for i in find_message_ids(data.decode("latin-1")) if i != own][:10]


def parse_report(data: bytes, *, unsubscribe_address: str = "") -> Report:
    """Read one bounce/complaint message, or an unsubscribe request sent to
    ``unsubscribe_address`` (the ``mailto:`` in List-Unsubscribe). Anything else is "other"."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    report = Report(
        kind="other",
        message_id=one_line(str(msg.get("Message-ID") or "")),
        subject=one_line(str(msg.get("Subject") or "")),
        addressed_to=parts.addressed_to(msg),
    )
    report.original_ids = _our_ids(data, own=report.message_id)
    if unsubscribe_address and _is_unsubscribe_request(msg, unsubscribe_address):
        senders = [a.lower() for _, a in getaddresses(msg.get_all("From", [])) if "@" in a]
        report.kind = "unsubscribe"
        report.unsubscribed = senders[:1]
        return report
    if shapes.client_unsubscribe(msg):
        senders = [a.lower() for _, a in getaddresses(msg.get_all("From", [])) if "@" in a]
        report.kind = "unsubscribe"
        report.unsubscribed = senders[:1]
        return report
    is_report = msg.get_content_type() == "multipart/report"
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            report.kind = "bounce"
            report.findings.extend(_dsn_findings(part, parts.body_text(msg)))
        elif ctype == "message/feedback-report":
            report.kind = "feedback"
            report.findings.extend(_arf_findings(parts.fields(part), msg))
        elif is_report and (fields := shapes.text_feedback_fields(part)) is not None:
            report.kind = "feedback"
            report.findings.extend(_arf_findings([fields], msg))
    if report.kind == "feedback":
        # A feedback loop mails its report to the address registered with it, not to our VERP
        # address; the message it returns keeps its Return-Path, which is.
        paths = parts.original_return_paths(msg)
        report.addressed_to += [a for a in paths if a not in report.addressed_to]
        if not report.findings:  # redacted: names no recipient; the verdict is the tied reader's
            report.findings = [_redacted_feedback(msg)]
            report.forwarded_by = parts.forwarded_by(msg)
    if report.kind == "bounce" and not report.findings and _unnamed_failure(msg):
        report.findings = _legacy_findings(msg)  # "Final-Recipient: rfc822; @host": read the text
    if report.kind != "other":
        return report
    if (ses := shapes.ses_notification(msg)) is not None:
        report.kind = ses[0]
        source = BounceSource.DSN if ses[0] == "bounce" else BounceSource.ARF
        report.findings = [Finding(r, k, st, None, why, source) for r, k, st, why in ses[1]]
        return report
    if (jmrp := shapes.jmrp_recipients(msg)) is not None:
        report.kind = "feedback"
        why = one_line(f"feedback report: complaint (JMRP) {msg.get('From') or ''}")
        report.findings = [Finding(r, BounceKind.COMPLAINT, reason=why, source=BounceSource.ARF)
                           for r in jmrp]  # fmt: skip
        return report
    if shapes.is_auto_reply(msg, replies_only=True):  # a vacation reply sent with Return-Path <>
        report.kind = "auto-reply"
    elif _looks_like_bounce(msg):
        report.findings = _legacy_findings(msg)
        if shapes.is_auto_reply(msg) and all(f.kind is BounceKind.UNKNOWN for f in report.findings):
            report.kind, report.findings = "auto-reply", []  # a reply, its text read for nothing
        elif report.findings:
            report.kind = "bounce"
        else:
            c = classify(None, None, parts.body_text(msg))
            report.loose = Finding("", BounceKind(c.kind.value), c.status, c.code, c.reason)
    elif shapes.is_auto_reply(msg):
        report.kind = "auto-reply"
    return report


def _dsn_findings(part: Message, human: str) -> list[Finding]:
    """One finding per failed or delayed recipient. A generic status (``5.0.0``, none) with a
    diagnostic that says nothing lets the human-readable part's words about the recipient
    decide; "after DATA" anywhere near the recipient (or in the report) tells the classifier
    that the recipient had been accepted."""
    found: list[Finding] = []
    blocks = parts.fields(part)
    named = [b for b in blocks if b.get("Final-Recipient") or b.get("Original-Recipient")]
    failed = [b for b in named if uncomment(b.get("Action") or "").lower() == "failed"]
    for block in named:
        rcpt = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
        action = uncomment(block.get("Action") or "").lower()
        if rcpt is None or action not in ("failed", "delayed"):
            continue  # delivered, relayed, expanded: not a failure
        diagnostic = str(block.get("Diagnostic-Code") or "")
        diagnostic = re.sub(r"^\s*(smtp|x-[\w-]+)\s*;\s*", "", diagnostic, flags=re.I)
        status = uncomment(block.get("Status") or "")
        near = diagnostic_near(human, rcpt)
        said = f"{diagnostic}\n{diagnostic_near(human, rcpt, keep=True)}"
        command = command_of(said) or command_of(human)
        c = classify(status, None, diagnostic, command=command)
        if c.kind is Kind.UNKNOWN or (c.kind is Kind.HARD and not c.status.strip("50.")):
            words = classify(status, None, f"{diagnostic} {near}", command=command)
            if words.kind is not Kind.UNKNOWN:
                c = words
        kind = c.kind
        if rests_on_words(c) and not _at_rcpt(command, said, rcpt):
            kind = Kind.BLOCK
        if kind is Kind.HARD and len(failed) == 1 and mailbox_state(human):
            kind = Kind.SOFT  # the report's own words about its one recipient: disabled, full
        kind = shapes.vendor_category(block) or kind
        if action == "delayed" and kind in (Kind.HARD, Kind.UNKNOWN, Kind.EXPIRED):
            kind = Kind.SOFT  # a warning: the MTA is still trying
        elif action == "failed" and c.status.startswith("4") and kind is not Kind.BLOCK:
            # Failed with a transient status: the MTA gave up retrying. A specific status of
            # the receiver's own still says what it was ("450 4.1.1 … User unknown" to every
            # retry: a missing mailbox); a generic one (a DNS error, 4.0.0) expired.
            last = classify(c.status, c.code, c.reason, command=command, gave_up=True)
            specific = not c.status.endswith(".0.0")
            kind = Kind.HARD if specific and last.kind is Kind.HARD else Kind.EXPIRED
        found.append(
            Finding(rcpt, BounceKind(kind.value), c.status, c.code, c.reason, BounceSource.DSN)
        )
    return found


def _arf_findings(blocks: list[Message], msg: Message) -> list[Finding]:
    rcpts: list[str] = []
    feedback_type = ""
    agent = ""
    for block in blocks:
        feedback_type = feedback_type or uncomment(block.get("Feedback-Type") or "").lower()
        agent = agent or one_line(str(block.get("User-Agent") or block.get("Reporting-MTA") or ""))
        for field in ("Removal-Recipient", "Original-Rcpt-To"):
            rcpts += [a for a in (_address(v) for v in block.get_all(field, [])) if a]
    rcpts = list(dict.fromkeys(rcpts)) or parts.original_recipients(msg)
    kind = shapes.feedback_kind(feedback_type)
    reason = one_line(f"feedback report: {feedback_type or 'no type'} {agent}")
    return [Finding(r, kind, reason=reason, source=BounceSource.ARF) for r in rcpts]


def _at_rcpt(command: str, said: str, rcpt: str) -> bool:
    """Whether the refusal of ``rcpt`` is shown to have answered RCPT TO: the report says so
    ("in reply to RCPT TO command", a transcript's ``>>> RCPT TO``), or, saying no command, the
    reply names the recipient (:func:`report_text.names_recipient`)."""
    return command == "RCPT" or (not command and names_recipient(said, rcpt))


def _looks_like_bounce(msg: Message) -> bool:
    sender = str(msg.get("From") or "") + " " + str(msg.get("Return-Path") or "")
    if _BOUNCE_FROM.search(sender) or str(msg.get("Return-Path") or "").strip() == "<>":
        return True
    return bool(_BOUNCE_SUBJECT.search(str(msg.get("Subject") or "")))


def _legacy_findings(msg: Message) -> list[Finding]:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # noqa: BLE001 - one odd message must not stop a whole mailbox
        log.warning("flufl.bounce could not read %s; reading its text only", msg.get("Message-ID"))
        temporary = permanent = frozenset()
    text = parts.body_text(msg)
    failed = [(a, False) for a in permanent] + [(a, True) for a in temporary]
    failed = [(a, t) for a, t in failed if _MAILBOX.fullmatch(a.decode("utf-8", "replace"))]
    if not failed:
        failed = [(a.encode(), False) for a in _addresses_with_diagnostics(msg, text)]
    if not failed:  # the addresses the text names, when few: the whole text is about them
        named = _named(msg, text)
        failed = [(a.encode(), False) for a in named] if len(named) <= _FEW else []
    found: list[Finding] = []
    for raw, is_temporary in failed:
        rcpt = raw.decode("utf-8", "replace").strip("<>").lower().rstrip(".")  # "a@b... No"
        if "@" not in rcpt:
            continue
        near, said = diagnostic_near(text, rcpt), diagnostic_near(text, rcpt, keep=True)
        command = command_of(near) or command_of(text)
        c = classify(None, None, near, command=command)
        if c.kind is Kind.UNKNOWN and len(failed) == 1:  # "failed: <a>", the reason elsewhere
            c = classify(None, None, re.sub(re.escape(rcpt), " ", text, flags=re.I),
                         command=command_of(text))  # fmt: skip
        kind = c.kind
        if rests_on_words(c) and not _at_rcpt(command, said, rcpt):
            kind = Kind.BLOCK
        if is_temporary and kind in (Kind.HARD, Kind.UNKNOWN):
            kind = Kind.SOFT
        found.append(
            Finding(rcpt, BounceKind(kind.value), c.status, c.code, c.reason, BounceSource.DSN)
        )
    return list({f.recipient: f for f in found}.values())


_EMAIL = re.compile(r"[\w.+=-]+@[\w-]+(?:\.[\w-]+)+")


_FEW = 3  # a report naming more addresses than this without a diagnostic for each says nothing


def _named(msg: Message, text: str) -> list[str]:
    """The addresses of the report's text, other than its own sender and recipients, the mail
    system's (mailer-daemon, postmaster…) and the ids shaped like addresses (Message-IDs)."""
    own = {
        a.lower()
        for _, a in getaddresses(msg.get_all("From", []) + msg.get_all("To", []))
        if "@" in a
    }
    ids = {m.lower() for m in re.findall(r"message-id:\s*<([^<>\s]+)>", text, re.I)}
    return [
        a
        for a in dict.fromkeys(a.lower() for a in _EMAIL.findall(text))
        if a not in own and a not in ids and not _SYSTEM.match(a)
    ]


_SYSTEM = re.compile(r"mailer-daemon@", re.I)


def _addresses_with_diagnostics(msg: Message, text: str) -> list[str]:
    """When flufl.bounce finds nothing: the addresses of the report's text that come with a
    status or reply code, other than the report's own sender and recipients."""
    found: list[str] = []
    for address in _named(msg, text):
        c = classify(None, None, diagnostic_near(text, address))
        if c.status or c.code is not None:
            found.append(address)
    return found


def _is_unsubscribe_request(msg: Message, unsubscribe_address: str) -> bool:
    if msg.get_content_type() == "multipart/report":
        return False  # a bounce of our own mail to that address is not a request
    target = getaddresses([unsubscribe_address])[0][1].lower()
    headers = msg.get_all("To", []) + msg.get_all("Cc", []) + msg.get_all("Delivered-To", [])
    return any(a.lower() == target for _, a in getaddresses(headers))


def _unnamed_failure(msg: Message) -> bool:
    """Whether a DSN has a failed recipient whose address cannot be read."""
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            for block in parts.fields(part):
                named = block.get("Final-Recipient") or block.get("Original-Recipient")
                action = uncomment(block.get("Action") or "").lower()
                if named is not None and action == "failed" and _address(named) is None:
                    return True
    return False


def _redacted_feedback(msg: Message) -> Finding:
    """What a feedback report that names nobody says, as a finding naming nobody: it becomes
    the reader's of the delivery the report is tied to (a VERP address, the returned message's
    Return-Path, a quoted Message-ID of ours) and changes nobody otherwise."""
    kinds = [
        uncomment(b.get("Feedback-Type") or "").lower()
        for part in msg.walk()
        if part.get_content_type() == "message/feedback-report"
        for b in parts.fields(part)
    ]
    feedback_type = next((k for k in kinds if k), "")
    reason = one_line(f"feedback report: {feedback_type or 'no type'}, no recipient named")
    return Finding("", shapes.feedback_kind(feedback_type), reason=reason, source=BounceSource.ARF)
