"""The one rule for a subscriber's display name, shared by sign-up, import and the composer.

Every name we accept must fit in a ``To:`` header: one line with no control characters (C0,
DEL, C1), one encoded-word, and the header line under 998 octets. Checking it at the door
(``subscribers``) and again when a message is built (``compose``) uses this same rule, so
nothing stored can later fail to be mailed.
"""

from __future__ import annotations

import unicodedata

MAX_NAME = 200  # characters
MAX_NAME_BYTES = 450  # in UTF-8: the encoded-word, the address and "To: " fit in 998 octets

# Control (C0, DEL, C1), surrogate, line and paragraph separator: what no header may carry.
FORBIDDEN_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")


def forbidden_character(text: str) -> str | None:
    """The first character of ``text`` no header may carry (a tab is whitespace), else ``None``."""
    if text.isprintable():  # fast path: no control, separator or surrogate characters
        return None
    for ch in text:
        if ch != "\t" and unicodedata.category(ch) in FORBIDDEN_CATEGORIES:
            return ch
    return None


def name_problem(name: str) -> str | None:
    """Why a one-line display name cannot be put in a header, or ``None`` when it can."""
    bad = forbidden_character(name)
    if bad is not None:
        return f"the name contains the control character U+{ord(bad):04X}"
    if "=?" in name:
        return "the name contains '=?', which mail programs would misread as encoding"
    if len(name) > MAX_NAME:
        return f"the name is longer than {MAX_NAME} characters"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"the name is longer than {MAX_NAME_BYTES} bytes in UTF-8"
    return None
