"""Reading the words of a report: what it says about one address, and which SMTP command the
refusal answered. Pure."""

from __future__ import annotations

import re

_WINDOW = 4  # lines after the address that still belong to it


def _words(pattern: str) -> re.Pattern[str]:
    """A pattern whose spaces match any run of white space: a reply's words wrap across lines
    (Postfix folds ``(in reply to`` / ``RCPT TO command)``)."""
    return re.compile(pattern.replace(" ", r"\s+"), re.IGNORECASE)


_AFTER_DATA = _words(
    r"(in reply to|after) (the )?(end of )?data\b|>>>+\s*data\b|smtp command\W*data\b"
    r"|did not like our (final )?data\b"  # DragonFly
    r"|failed after i sent the message"  # qmail
)
_AFTER_MAIL = _words(r"(in reply to|after) mail from\b|>>>+\s*mail from")
# A recipient refusal at RCPT TO names the recipient where Postfix-style servers put it
# (``550 <a@example.org>: User unknown``); the same reply with nothing before the colon
# (``550 : User unknown``, ``550: : …``) answered the message, after DATA: there was no one
# recipient to name. Japanese carriers answer their subscribers' sender filters so.
_EMPTY_SLOT = re.compile(r"(?<![\w.])[45]\d\d(?:[ -][45]\.\d{1,3}\.\d{1,3})?:? :(?!:)")
_PIPELINED = re.compile(r"need rcpt|no valid recipients", re.IGNORECASE)  # RCPT's answer, late
_AFTER_RCPT = _words(
    r"(in reply to|after) rcpt\b|>>>+\s*rcpt to|\[rcpt_to\]|smtp command\W*rcpt\b"
    r"|smtp:rcpt\b|\brcpt to:?\s*<[^>]*>\s*:?\s*\d{3}\b|after rcpt command"
    r"|did not like our rcpt to\b|does not like recipient\b"  # DragonFly, qmail
)


def command_of(text: str) -> str:
    """The SMTP command the refusal in ``text`` answered, when it says: "MAIL" (our sender was
    refused), "DATA" (the recipient had been accepted), "RCPT", or ""."""
    if _AFTER_MAIL.search(text):
        return "MAIL"
    if _AFTER_DATA.search(text) and not _PIPELINED.search(text):
        return "DATA"
    if _EMPTY_SLOT.search(text) and not _AFTER_RCPT.search(text):
        return "DATA"
    return "RCPT" if _AFTER_RCPT.search(text) or _PIPELINED.search(text) else ""


def names_recipient(text: str, address: str) -> bool:
    """Whether a reply in ``text`` names ``address`` right after its code, a status and a few
    words (``550 <a@example.org>: User unknown``, ``550 a@example.org... No such user``, ``553
    Invalid recipient a@example.org``): the form of an answer to RCPT TO, which is about one
    recipient. A reply after DATA is about the message, every recipient at once: it names
    none (``550 : User unknown``)."""
    reply = (
        r"(?<![\w.])[45]\d\d(?:[ :-]\s*)(?:[45]\.\d{1,3}\.\d{1,3}\s+)?"
        rf"(?:[^\n<>@]{{0,80}}?[\s(])?<?{re.escape(address)}>?(?![\w-]|\.\w)"
    )
    return re.search(reply, text, re.IGNORECASE) is not None


def diagnostic_near(text: str, address: str, *, keep: bool = False) -> str:
    """What the report says about ``address``: each line naming it and the few lines after
    (up to a blank line or another address), the address itself blanked unless ``keep``."""
    lines = text.splitlines()
    window: list[str] = []
    for i, line in enumerate(lines):
        if address not in line.lower():
            continue
        if i and lines[i - 1].lstrip().startswith(">>>"):
            window.append(lines[i - 1])  # the command of a session transcript it answered
        window.append(line)
        for nxt in lines[i + 1 : i + 1 + _WINDOW]:
            if not nxt.strip() or ("@" in nxt and address not in nxt.lower()):
                break
            window.append(nxt)
    text = " ".join(dict.fromkeys(window))
    if keep:
        return text
    return re.sub(re.escape(address), " ", text, flags=re.IGNORECASE)
