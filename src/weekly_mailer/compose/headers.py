"""Header safety and formatting shared by the fast and the reference paths.

Every value that goes into a header is checked here: CR or LF anywhere is a
:class:`HeaderInjectionError`; other control characters, unpaired surrogates, and addresses
we cannot put on the wire unencoded (non-ASCII, malformed) are a :class:`ComposeError`.
"""

from __future__ import annotations

import base64
import email.policy
import re
import unicodedata
from email.message import EmailMessage
from email.utils import parseaddr
from typing import TYPE_CHECKING

from weekly_mailer.compose.names import name_problem
from weekly_mailer.errors import ComposeError, HeaderInjectionError

FOLD_AT = 78  # RFC 5322 2.1.1: lines of at most 78 characters, where the header allows it


def fold_line(line: str, limit: int = FOLD_AT) -> str:
    """One unfolded header line ``Name: value`` (no CRLF), folded (CRLF before a space) so each
    line is at most ``limit`` characters where a space allows it.

    Folding only ever inserts CRLF before a space that is already there, so unfolding gives the
    line back exactly: nothing is encoded, and a URL, an encoded word or a Message-ID (which hold
    no space) is never cut; a token longer than ``limit`` stays whole on its line. Spaces outside
    quoted strings and ``<…>`` are preferred. ``List-Unsubscribe`` puts each of its URLs on a
    line of its own (``<https://…>,`` CRLF `` <mailto:…>``), whatever their length, so the
    fast path (which folds it around a placeholder) and the reference path agree.
    """
    if len(line) <= limit and not line[:17].lower() == "list-unsubscribe:":
        return line
    first = line.find(":") + 2  # never fold right after the colon: the value starts there
    good: list[int] = []
    inside: list[int] = []
    quoted = escaped = False
    angle = 0
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle += 1
        elif ch == ">" and not quoted and angle:
            angle -= 1
        elif ch == " " and i > first and line[i - 1] != " " and line[i + 1 : i + 2].strip():
            (inside if quoted or angle else good).append(i)
    if line[:17].lower() == "list-unsubscribe:":
        breaks = [i for i in good if line[i - 1] == "," and line[i + 1] == "<"]
        if breaks:
            ends = zip([0, *breaks], [*breaks, len(line)], strict=True)
            return "\r\n".join(line[a:b] for a, b in ends)
    pieces: list[str] = []
    start = 0
    while len(line) - start > limit:
        fits = [i for i in good if start < i <= start + limit] or [
            i for i in inside if start < i <= start + limit
        ]
        later = [i for i in good + inside if i > start]
        if not fits and not later:
            break
        cut = max(fits) if fits else min(later)
        pieces.append(line[start:cut])
        start = cut
    pieces.append(line[start:])
    return "\r\n".join(pieces)


_STANDARD_78 = email.policy.SMTP.clone(max_line_length=FOLD_AT)


if TYPE_CHECKING:  # typeshed's EmailPolicy is generic in the message class; the runtime's is not
    _EmailPolicy = email.policy.EmailPolicy[EmailMessage]
else:
    _EmailPolicy = email.policy.EmailPolicy


class _FoldingPolicy(_EmailPolicy):
    """The SMTP policy with headers folded by :func:`fold_line` at 78 characters (never into an
    unusable RFC 2047 word, which the standard folder makes of a long List-Unsubscribe) and
    ``max_line_length`` (998) only for what cannot fold. A non-ASCII Subject is encoded in RFC
    2047 words of the standard folder at 78 (each word short, the words apart by spaces)."""

    def fold(self, name: str, value: str) -> str:
        return self._refold(name, value, super().fold(name, value))

    def fold_binary(self, name: str, value: str) -> bytes:
        plain = super().fold_binary(name, value).decode("ascii", "surrogateescape")
        return self._refold(name, value, plain).encode("ascii", "surrogateescape")

    def _refold(self, name: str, value: str, folded: str) -> str:
        body = folded[: -len(self.linesep)] if folded.endswith(self.linesep) else folded
        if "\n" in body:  # folded already (longer than 998): leave it as the folder made it
            return folded
        if name.lower() == "subject" and "=?" in body:  # RFC 2047 words: short ones, apart
            return str(_STANDARD_78.fold(name, value))
        return fold_line(body).replace("\r\n", self.linesep) + self.linesep


# SMTP line endings; headers folded at 78 where a space allows (fold_line), never into an
# encoded word, so a List-Unsubscribe URL is never cut or RFC 2047-encoded.
POLICY = _FoldingPolicy(linesep="\r\n", max_line_length=998)

MAX_ADDRESS = 254
MAX_URL = 700

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDRESS_RE = re.compile(
    rf"^{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# A display name that needs neither quoting nor encoding: atoms separated by single spaces.
_PLAIN_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/^_`{|}~-]+)*$")
_QUOTABLE_RE = re.compile(r"^[\x20-\x7e]*$")
_URL_RE = re.compile(r"^https?://[\x21-\x7e]+$")
_MESSAGE_ID_RE = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>$")


def check_single_line(what: str, value: str) -> None:
    """Refuse CR/LF (header injection) and other control or unencodable characters."""
    if value.isprintable():  # fast path: no control, separator or surrogate characters
        return
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(f"{what} contains a line break")
    for ch in value:
        if ch != "\t" and unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            raise ComposeError(f"{what} contains the control character U+{ord(ch):04X}")


def clean_display_name(name: str) -> str:
    """The name on one line with single spaces, or a :class:`ComposeError`."""
    check_single_line("the name", name)
    cleaned = " ".join(name.split())
    problem = name_problem(cleaned)
    if problem:
        raise ComposeError(problem)
    return cleaned


def check_address(address: str) -> str:
    """The address if we can send to it as-is (ASCII ``local@domain``), else a clear error."""
    check_single_line("the address", address)
    if len(address) > MAX_ADDRESS or not _ADDRESS_RE.match(address):
        if address and not address.isascii():
            raise ComposeError(
                f"{address!r}: internationalised addresses (SMTPUTF8) are not supported"
            )
        raise ComposeError(f"{address!r} is not an e-mail address we can send to")
    return address


def check_url(what: str, url: str) -> str:
    """An absolute http(s) URL of printable ASCII without spaces, ``<`` or ``>``."""
    check_single_line(what, url)
    if len(url) > MAX_URL or not _URL_RE.match(url) or "<" in url or ">" in url:
        raise ComposeError(f"{what} {url[:80]!r} is not an absolute http(s) URL")
    return url


def check_message_id(message_id: str) -> str:
    """``<left@right>`` in printable ASCII."""
    check_single_line("the Message-ID", message_id)
    if not _MESSAGE_ID_RE.match(message_id):
        raise ComposeError(f"{message_id!r} is not a Message-ID like <id@domain>")
    return message_id


def _encoded_word(text: str) -> str:
    """One RFC 2047 base64 encoded-word for the whole display name.

    One word, not several: Python's parser puts a space between adjacent encoded-words in a
    display name while RFC 2047 readers drop it, so splitting a name would change it for one
    side or the other. One word is what ``email`` itself writes with a 998-octet line limit;
    :data:`MAX_NAME_BYTES` keeps the header line under 998 octets.
    """
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def format_address(name: str, address: str) -> str:
    """``Name <addr>`` for a header: plain, quoted, or RFC 2047-encoded as the name needs.

    ``name`` must already be clean (:func:`clean_display_name`) and ``address`` checked.
    """
    if not name:
        return address
    if _PLAIN_NAME_RE.match(name) and "=?" not in name:
        return f"{name} <{address}>"
    if _QUOTABLE_RE.match(name) and "=?" not in name:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{address}>'
    return f"{_encoded_word(name)} <{address}>"


def address_of(from_address: str) -> str:
    """The bare address of a ``Name <addr>`` setting (the SMTP envelope sender)."""
    return parseaddr(from_address)[1]


def domain_of(from_address: str) -> str:
    """The domain of the From address (for Message-IDs)."""
    return address_of(from_address).rpartition("@")[2] or "localhost"
