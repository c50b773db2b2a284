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

A specific enhanced status decides (RFC 3463: ``X.1.1`` bad mailbox is hard, ``X.2.1`` mailbox
disabled and every other mailbox state is soft, ``X.3`` system, ``X.6`` content and ``X.5``
protocol errors are never hard, ``X.7`` is a block, ``X.1.7``/``X.1.8`` are about *our* sender
address: a block); the text only refines it (a ``5.2.0`` that says "blocked" is a block). When
the status is generic (``5.0.0``) or missing, the text decides, then the bare reply code: a
``550`` with "blocked using Spamhaus" is a block, while a ``550 user unknown`` is hard, unless it
answered the message's DATA (``command="DATA"``): the recipient was already accepted, so "user
unknown" then is a content filter speaking, not a missing mailbox; or MAIL FROM: it is about our
sender address. Suspended, disabled, frozen or inactive mailboxes are soft, never hard. A host or
domain that takes no mail at all (RFC 7504's ``521``/``556``, RFC 7505's null MX: "Host does not
accept mail") is hard whatever the status says. With ``gave_up`` (the sender stopped retrying)
a transient answer is read as its permanent twin: ``450 4.1.1 user unknown`` to every retry.

:func:`rests_on_words` tells the report reader when a hard verdict stands on "no such user" words
alone (no specific status, no domain, no directory lookup): filters answer in those words too, so
the reader keeps such a verdict only when the report shows the refusal answered RCPT TO.
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
_CODES = re.compile(
    r"[^\s<>]+@[^\s<>]+|\b(smtp|esmtp|requested action not taken|\d[\d.]*)\b|[^\w\s]", re.I
)


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
# The mailbox exists and is in a state: disabled, suspended, full. The reader's, temporary.
_MAILBOX_STATE = (
    r"(account|mailbox|user|address) (has been |is |was )?(temporarily )?(disabled|deactivated"
    r"|inactive|suspended|frozen|on hold|locked|blocked|disabled or discontinued)",
    r"account (is )?(disabled|suspended|inactive)|\b(suspended|inactive|frozen) (account|mailbox)",
    r"mailbox (is )?(full|over quota)",
    r"over (the )?quota",
    r"not enough (disk |storage )?space|disk full",
)
# A recipient's own mailbox taking mail too fast is the recipient's (temporary) state.
_SOFT_FIRST = _rx(
    r"receiving mail (at a rate|too quickly)",
    r"(not found|failure|error|problem), try again",
    r"malformed or unexpected name server reply",
    r"(could ?n[o']t|can ?n[o']t|unable to) (create|open|write|lock)\b|i/o error",
    *_MAILBOX_STATE,
)
_STATE = _rx(*_MAILBOX_STATE)
_BLOCK = _rx(
    r"spam",
    r"block ?list|black ?list|blocked|blocking",
    r"\b(rbl|dnsbl|uribl|surbl)\b",
    r"spamhaus|spamcop|barracuda|sorbs|abuseat|senderscore|proofpoint|mimecast",
    r"(?<!not )listed (at|in|on|by)",
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
    r"recipient preferences",
)
# The destination takes no mail at all (RFC 7504's 521 and RFC 7505's null MX say "Host does
# not accept mail"), whatever the status: some MTAs send it with 5.7.27 or 5.3.2.
_NO_MAIL = _rx(r"(?<!sender )(?<!sender's )\b(host|domain) does not accept (any )?mail")
# A domain or host that does not exist or takes no mail: not something a filter says.
_NO_MAIL_CODES = (521, 556)
_HARD_DOMAIN = _rx(
    r"unrouteable|unroutable|unable to route",
    r"host unknown|unknown host|domain (is )?not reachable|no smtp service|does not accept mail",
    r"host \S+ not found|no such domain|domain (name )?(does not|doesn't) exist",
    r"host or domain name not found|domain (name )?not found|host not found|no mx",
    r"name service error",
    r"bad destination system",
)
# "No such user" and its kin: what a missing mailbox says, and what recipients' filters say too.
_HARD_MAILBOX = _rx(
    r"user unknown|unknown user|unknown (local[- ])?(recipient|mailbox|address|account)",
    r"no such (user|mailbox|recipient|address|account|person)",
    r"(user|mailbox|recipient|address|account) (was |is )?(not found|unavailable|invalid)",
    r"invalid (recipient|mailbox|address|user)",
    r"(?<!may )(?<!might )(does not|doesn't|did not|not) exist",
    r"no mailbox here",
    r"not a valid (mailbox|recipient|user|address)",
    r"(account|mailbox) (has been |is )?closed",
    r"(is )?no longer (active|available|in use|valid)",
    r"(user|recipient) (has )?moved|user not local",
    r"address (couldn't|could not|cannot) be found|no valid recipients?\b",
    r"invalid (final delivery )?userid",
    r"bad destination mailbox",
    r"this user doesn't have an? .* account",
    r"mailbox not found|recipient not found|addressee unknown|not our customer",
    r"undeliverable address|\baddress rejected(?!:)",
)
# The receiving system's own lookup of the address failed, in its own words or code: a
# directory (Notes/Domino, an address book), Exchange 2003's "Unknown Recipient" (000C05A6).
_DIRECTORY = _rx(
    r"not listed in (the )?(domino directory|directory|public name|[\w &]*address book)",
    r"ディレクトリ.*(ありません|見つかりません)",  # Notes/Domino in Japanese: not in the directory
    r"\bMSEXCH:.*\(000C05A6\)",
)
_HARD = re.compile(
    f"{_HARD_MAILBOX.pattern}|{_HARD_DOMAIN.pattern}|{_DIRECTORY.pattern}", re.IGNORECASE
)
_SOFT = _rx(
    r"mailbox.*full|full mailbox|quota|insufficient (system )?storage|out of storage",
    r"\bon hold\b|(internal|mail) system (error|problem)|mailer error|media error",
    r"message (length|size) exceed|(message|mail) (is )?too (big|large)",
    r"exceeded (storage|the storage)|storage allocation|size limit",
    r"temporar(y|ily)|try again|later",
)


def mailbox_state(text: str) -> bool:
    """Whether ``text`` says the mailbox exists in a state (disabled, suspended, full)."""
    return bool(_STATE.search(text))


def rests_on_words(c: Classification) -> bool:
    """Whether a hard verdict rests on "no such user" words alone: no specific status behind
    them (none, or ``5.0.0``) and nothing said about a domain or a directory lookup. Recipients'
    own filters answer in these words too (after DATA, for a sender they refuse), so a report
    must show more to make them a missing mailbox: that the refusal answered RCPT TO."""
    if c.kind is not Kind.HARD or (c.status and not c.status.endswith(".0.0")):
        return False
    if _HARD_FIRST.search(c.reason) or _NO_MAIL.search(c.reason):
        return False
    if _HARD_DOMAIN.search(c.reason) or _DIRECTORY.search(c.reason):
        return False
    return bool(_HARD_MAILBOX.search(c.reason))


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
    """What a specific status (not ``X.0.0``) says whatever the text: a bad mailbox or domain,
    a block, an expiry, a transient failure. None: the text decides."""
    cls, subject, detail = status.split(".")
    if subject == "4" and detail == "7":
        return Kind.EXPIRED
    if subject == "7" or (subject == "1" and detail in ("7", "8")):
        return Kind.BLOCK  # policy, or our own sender address refused
    if cls == "4":
        return Kind.SOFT
    if subject == "1" and detail in ("1", "2", "3", "6", "10"):
        return Kind.HARD  # bad mailbox, bad system, bad syntax, moved, null MX
    return None


def _by_specific_status(status: str, text: str, *, command: str) -> Kind:
    by_status = _by_status(status)
    if by_status is Kind.HARD:  # unless the text says full, suspended or blocked (a mislabelled
        if _SOFT_FIRST.search(text):  # 5.1.1)
            return Kind.SOFT
        if _BLOCK.search(text) and not _HARD.search(text):
            return Kind.BLOCK
        return Kind.HARD
    by_text = _by_text(text)
    if by_text is Kind.HARD and status.split(".")[1] in ("2", "3") and command != "RCPT":
        # X.2.x "the mailbox exists, but…" (disabled, full: RFC 3463) and X.3.x "the destination
        # system…" contradict a "user unknown" in the text. Only a refusal of the address itself
        # (at RCPT TO) makes it a missing mailbox; otherwise the status says what it is: the
        # recipient's own filter (Japanese carriers answer "5.2.1 User unknown" so), a system
        # fault.
        return Kind.SOFT
    if by_status is Kind.SOFT and by_text in (Kind.BLOCK, Kind.EXPIRED):
        return by_text  # "4.4.2 … not going to try again", "4.7.0"-less greylisting blocks
    if by_status is not None:
        return by_status
    if by_text is Kind.HARD and command in ("DATA", "MAIL"):
        return Kind.BLOCK  # the recipient was accepted (DATA), or it is our sender (MAIL FROM)
    if by_text is not None:
        return by_text
    subject, detail = status.split(".")[1:]
    if (subject, detail) == ("4", "4"):
        return Kind.HARD  # unable to route
    return Kind.SOFT if subject in ("2", "3", "6") else Kind.UNKNOWN


def _by_code(code: int | None, text: str) -> Kind | None:
    """A bare reply code: a 550 alone says "no such mailbox"; a 550 with words we cannot read
    ("Rejected", "Protocol violation") says nothing."""
    if code is None:
        return None
    if 400 <= code < 500:
        return Kind.SOFT
    if code == 552:
        return Kind.SOFT  # exceeded storage allocation
    if code in (550, 551, 553) and not re.search(r"[a-z]{3}", _CODES.sub(" ", text), re.I):
        return Kind.HARD
    return None


def classify(
    status: str | None = None,
    code: int | None = None,
    text: str = "",
    *,
    command: str = "",
    gave_up: bool = False,
) -> Classification:
    """Classify one failure. ``status`` and ``code`` are read from ``text`` when not given;
    ``command``: the SMTP command the refusal answered (``RCPT``, ``DATA``…) when known;
    ``gave_up``: the sending MTA stopped retrying (a DSN's ``Action: failed``), so a transient
    answer (``450 4.1.1 user unknown``) is read for what it says, as its permanent twin."""
    command = command.upper()
    reason = one_line(text)
    in_text = find_status(reason)
    given = uncomment(status or "")
    if not STATUS_RE.fullmatch(given) or (given.endswith(".0.0") and in_text):
        given = in_text or (given if STATUS_RE.fullmatch(given) else "")
    code = code if code is not None else find_code(reason)
    decide, decide_code = given, code
    if gave_up:
        decide = "5" + given[1:] if given.startswith("4") else given
        decide_code = code + 100 if code is not None and 400 <= code < 500 else code
    if _HARD_FIRST.search(reason) or _NO_MAIL.search(reason):
        kind = Kind.HARD
    elif code in _NO_MAIL_CODES and not _BLOCK.search(reason):
        kind = Kind.HARD  # RFC 7504: this host (521) or domain (556) takes no mail at all
    elif decide and not decide.endswith(".0.0"):
        kind = _by_specific_status(decide, reason, command=command)
    else:
        kind = _by_text(reason) or _by_code(decide_code, reason) or Kind.UNKNOWN
        if kind is Kind.HARD and command in ("DATA", "MAIL"):
            kind = Kind.BLOCK  # the recipient was accepted (DATA), or it is our sender (MAIL)
    transient = decide.startswith("4") or (
        not decide and decide_code is not None and decide_code < 500
    )
    if transient and kind is Kind.HARD:
        kind = Kind.SOFT  # "try again later" about a mailbox is not a verdict on it
    return Classification(kind=kind, status=given, code=code, reason=reason)


_COMMENT = re.compile(r"\([^()]*\)")


def uncomment(value: str) -> str:
    """An RFC 3464 / RFC 5322 field value without its comments: ``5.1.1 (bad mailbox)``."""
    value = str(value)
    while True:
        stripped = _COMMENT.sub(" ", value)
        if stripped == value:
            return " ".join(value.split())
        value = stripped
