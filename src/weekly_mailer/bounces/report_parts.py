"""The parts of a report message, whatever it reports: its field blocks (RFC 3464 and RFC 5965
parts), its own text, the message it returns, the addresses it was delivered to. Pure."""

from __future__ import annotations

import email
import re
from email.message import Message
from email.utils import getaddresses


def fields(part: Message) -> list[Message]:
    """The field blocks of a message/delivery-status or message/feedback-report part, one per
    recipient even when the blank line between two recipients' fields is missing (AOL)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [p for p in payload if isinstance(p, Message)]
    else:
        raw = part.get_payload(decode=True)
        text = raw if isinstance(raw, bytes) else b""
        found = re.split(rb"\r?\n\r?\n", text)
        blocks = [email.message_from_bytes(b + b"\n") for b in found if b.strip()]
    return [one for block in blocks for one in _per_recipient(block)]


_RECIPIENT_FIELDS = ("final-recipient", "original-recipient")


def _per_recipient(block: Message) -> list[Message]:
    """A field block naming more than one recipient, split where the next recipient's fields
    begin (a second ``Original-Recipient`` or ``Final-Recipient``)."""
    if len(block.get_all("Final-Recipient", [])) < 2:
        return [block]
    groups: list[list[tuple[str, str]]] = [[]]
    for name, value in block.items():
        key = name.lower()
        seen = {n.lower() for n, _ in groups[-1]}
        if key in _RECIPIENT_FIELDS and (key in seen or seen - set(_RECIPIENT_FIELDS)):
            groups.append([])  # the same field again, or after this recipient's other fields
        groups[-1].append((name, value))
    split: list[Message] = []
    for items in groups:
        one = Message()
        for name, value in items:
            one[name] = value
        split.append(one)
    return split


_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")


def addressed_to(msg: Message) -> list[str]:
    """Where the message was delivered: the envelope recipient headers a local delivery adds,
    and To (a DSN is addressed to the envelope sender it answers)."""
    values = [str(v) for h in _ENVELOPE_HEADERS for v in msg.get_all(h, [])]
    return list(dict.fromkeys(a.lower() for _, a in getaddresses(values) if "@" in a))


def body_text(msg: Message) -> str:
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
        elif part.get_content_type() == "text/plain" or part is msg or _broken(part):
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                texts.append(raw.decode(part.get_content_charset() or "utf-8", "replace"))
    lines = "\n".join(texts).splitlines()
    end = next((i for i, line in enumerate(lines) if _ORIGINAL.match(line)), len(lines))
    return "\n".join(lines[:end])


_ORIGINAL = re.compile(
    r"^\s*(-+ ?(original message|this is a copy|below this line|the original message)"
    r"|below is a copy|received: |return-path: )",
    re.IGNORECASE,
)


def returned_message(msg: Message) -> Message | None:
    """The message a report returns (its message/rfc822 part, or its text/rfc822-headers)."""
    for part in msg.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
            raw = part.get_payload(decode=True)
            return email.message_from_bytes(raw if isinstance(raw, bytes) else b"")
    return None


def original_recipients(msg: Message) -> list[str]:
    inner = returned_message(msg)
    if inner is None:
        return []
    return [a.lower() for _, a in getaddresses(inner.get_all("To", [])) if "@" in a]


def original_return_paths(msg: Message) -> list[str]:
    """The Return-Path of the message a report returns (message/rfc822 or its headers)."""
    inner = returned_message(msg)
    if inner is None:
        return []
    paths = [str(v) for v in inner.get_all("Return-Path", [])]
    return [a.lower() for _, a in getaddresses(paths) if "@" in a]


def _broken(part: Message) -> bool:
    """A multipart part whose boundary was lost (a folded header line left unindented): its
    payload is one text, and the report's words may be in it."""
    return part.get_content_maintype() == "multipart" and not part.is_multipart()


# "Fw:", "Fwd:" and their translations (TR, WG, RV, ENC, VS, VB, I, PD, Doorst), repeated.
_FORWARD = re.compile(r"^\s*(?:(?:fwd?|tr|wg|rv|enc|vs|vb|i|pd|doorst)\s*:\s*)+(.*)$", re.I | re.S)


def forwarded_by(msg: Message) -> str:
    """The sender of a report that forwards the message it returns to a person who got it
    unnamed (Bcc: "Undisclosed Recipients"): its subject is "Fw:" + the returned message's and
    its sender is not the returned message's. That sender is then the one recipient the report
    can mean; "" for any other report (a feedback loop's "Abuse Report", a named recipient)."""
    inner = returned_message(msg)
    if inner is None:
        return ""
    named = getaddresses(inner.get_all("To", []) + inner.get_all("Cc", []))
    if any("@" in a for _, a in named):
        return ""
    forward = _FORWARD.match(_words(msg.get("Subject")))
    returned = _words(inner.get("Subject"))
    if forward is None or not returned or forward.group(1) != returned:
        return ""
    senders = [a.lower() for _, a in getaddresses(msg.get_all("From", [])) if "@" in a]
    original = {a.lower() for _, a in getaddresses(inner.get_all("From", [])) if "@" in a}
    return senders[0] if len(senders) == 1 and senders[0] not in original else ""


def _words(value: object) -> str:
    return " ".join(str(value or "").split()).casefold()
