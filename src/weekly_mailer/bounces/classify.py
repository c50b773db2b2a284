"""One classifier for a delivery failure: ``hard``, ``soft``, ``block``, ``expired`` or ``unknown``.

Pure: no I/O, no clock. It reads an enhanced status code (RFC 3463, ``5.1.1``), an SMTP reply
code (``550``) and the diagnostic text, and decides what the failure means for the subscriber:

- ``hard``: the mailbox or domain does not exist (or moved, or was closed). Only this counts
  toward ``bounce_limit``.
- ``soft``: mailbox full, over quota, a temporary failure: try again next week.
- ``block``: spam, policy, reputation, block lists, SPF/DKIM/DMARC failure, rate limits: the
  receiving system refused *us*; the reader did nothing wrong.
- ``expired``: the sending MTA gave up after retrying (delivery time expired).
- ``unknown``: nothing to go on.

Text beats a bare code: a ``550`` with "blocked using Spamhaus" is a block, while a ``550 5.1.1
user unknown`` is hard. The rules are tried in order; the first that matches decides.
"""

from __future__ import annotations

import dataclasses
import enum
import re


class Kind(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    BLOCK = "block"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Classification:
    kind: Kind
    status: str = ""  # enhanced status code, "5.1.1", or ""
    code: int | None = None  # SMTP reply code, 550, or None
    reason: str = ""  # the diagnostic text, one line


STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
CODE_RE = re.compile(r"(?<![\d.#-])([245]\d\d)(?=[\s\-:;,.)]|$)(?!\.\d)")
MAX_REASON = 500


def _rx(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(parts), re.IGNORECASE)


_EXPIRED = _rx(
    r"delivery time expired",
    r"message expired",
    r"expired after",
    r"retry time(out)? (not reached|exceeded)",
    r"(retry|queue) timeout",
    r"too long in (the )?queue",
    r"been in the queue too long",
    r"cannot send message for \d+ (day|hour)",
    r"could not be delivered for \d+ (day|hour)",
    r"not going to try again",  # qmail; its "Giving up on <host>" ends every failure
    r"maximum (queue|delivery) (time|lifetime)",
    r"undeliverable for \d+ (day|hour)",
)
# The few texts that look like a refusal but mean "no such recipient".
_HARD_FIRST = _rx(
    r"recipient address rejected: access denied",  # Office 365 directory-based edge blocking
    r"RESOLVER\.ADR\.RecipNotFound",
    r"RESOLVER\.ADR\.RecipientNotFound",
)
# A recipient's own mailbox taking mail too fast is the recipient's (temporary) state.
_SOFT_FIRST = _rx(
    r"receiving mail (at a rate|too quickly)",
    r"mailbox (is )?(full|over quota)",
    r"over (the )?quota",
)
_BLOCK = _rx(
    r"spam",
    r"block ?list|black ?list|blocked|blocking",
    r"\b(rbl|dnsbl|uribl|surbl)\b",
    r"spamhaus|spamcop|barracuda|sorbs|abuseat|senderscore|proofpoint|mimecast",
    r"listed (at|in|on|by)",
    r"reputation",
    r"polic(y|ies)",
    r"prohibited|not (allowed|permitted|authori[sz]ed)",
    r"unsolicited|\bbulk\b|\bjunk\b|suspicious|phish|virus|malware",
    r"dmarc|\bspf\b|\bdkim\b|authenticat",
    r"rate[- ]?limit|throttl|too many (messages|connections|recipients|mails)",
    r"unexpected volume|user complaints|deferred due to",
    r"\[TS[SO]\d\d\]|\[PH\d\d\]|\bPTR\b|reverse (dns|lookup)",
    r"client host .*rejected|sender .*rejected|rejected for .*reasons",
    r"message (content )?rejected|content rejected",
    r"access denied|relay(ing)? (access )?denied",
)
_HARD = _rx(
    r"user unknown|unknown user|unknown (local[- ])?(recipient|mailbox|address|account)",
    r"no such (user|mailbox|recipient|address|account|domain|person)",
    r"(user|mailbox|recipient|address|account) (was |is )?(not found|unavailable|invalid)",
    r"invalid (recipient|mailbox|address|user)",
    r"(does not|doesn't|did not|not) exist",
    r"no mailbox here",
    r"not a valid (mailbox|recipient|user|address)",
    r"(account|mailbox) (has been |is )?(disabled|deactivated|closed|inactive|suspended)",
    r"(is )?no longer (active|available|in use|valid)",
    r"(user|recipient) (has )?moved",
    r"unrouteable|unroutable|unable to route",
    r"host or domain name not found|domain (name )?not found|host not found|no mx",
    r"name service error",
    r"bad destination (mailbox|system)",
    r"this user doesn't have a .* account",
    r"mailbox not found|recipient not found|addressee unknown|not our customer",
    r"undeliverable address|address rejected",
)
_SOFT = _rx(
    r"mailbox.*full|full mailbox|quota|insufficient (system )?storage|out of storage",
    r"exceeded (storage|the storage)|storage allocation|size limit",
    r"temporar(y|ily)|try again|later",
)


def find_status(text: str) -> str:
    """The most specific enhanced status code in ``text`` ("5.1.1"), else ""."""
    found = ["{}.{}.{}".format(*m.groups()) for m in STATUS_RE.finditer(text)]
    specific = [s for s in found if not s.endswith(".0.0")]
    return (specific or found or [""])[0]


def find_code(text: str) -> int | None:
    """The first SMTP reply code in ``text`` (550), else None."""
    m = CODE_RE.search(text)
    return int(m.group(1)) if m else None


def one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_REASON]


def _by_text(text: str) -> Kind | None:
    for kind, pattern in (
        (Kind.EXPIRED, _EXPIRED),
        (Kind.HARD, _HARD_FIRST),
        (Kind.SOFT, _SOFT_FIRST),
        (Kind.BLOCK, _BLOCK),
        (Kind.HARD, _HARD),
        (Kind.SOFT, _SOFT),
    ):
        if pattern.search(text):
            return kind
    return None


def _by_status(status: str) -> Kind | None:
    if not status:
        return None
    cls, subject, detail = status.split(".")
    if subject == "4" and detail == "7":
        return Kind.EXPIRED
    if subject == "7":
        return Kind.BLOCK
    if cls == "4":
        return Kind.SOFT
    if subject == "1" or (subject == "2" and detail == "1") or (subject, detail) == ("4", "4"):
        return Kind.HARD  # bad mailbox/domain, mailbox disabled, unable to route
    if subject == "2":
        return Kind.SOFT  # 5.2.2 mailbox full and other mailbox states
    return None


def _by_code(code: int | None) -> Kind | None:
    if code is None:
        return None
    if 400 <= code < 500:
        return Kind.SOFT
    if code == 552:
        return Kind.SOFT  # exceeded storage allocation
    if code in (550, 551, 553):
        return Kind.HARD
    return None


def classify(status: str | None = None, code: int | None = None, text: str = "") -> Classification:
    """Classify one failure. ``status`` and ``code`` are read from ``text`` when not given."""
    reason = one_line(text)
    in_text = find_status(reason)
    given = (status or "").strip()
    if not STATUS_RE.fullmatch(given) or (given.endswith(".0.0") and in_text):
        given = in_text or (given if STATUS_RE.fullmatch(given) else "")
    code = code if code is not None else find_code(reason)
    kind = _by_text(reason) or _by_status(given) or _by_code(code) or Kind.UNKNOWN
    transient = given.startswith("4") or (not given and code is not None and code < 500)
    if transient and kind is Kind.HARD:
        kind = Kind.SOFT  # "try again later" about a mailbox is not a verdict on it
    return Classification(kind=kind, status=given, code=code, reason=reason)
