"""Our Message-IDs as a report or a provider event quotes them: found with or without their
angle brackets, never a neighbour's text, and only ours once the signature is checked."""

from __future__ import annotations

import re

from weekly_mailer.compose import find_message_ids, make_message_id, read_message_id
from weekly_mailer.config import Settings


def test_found_bracketed_bare_and_once_each(settings: Settings) -> None:
    a = make_message_id(settings, 7, 41)
    b = make_message_id(settings, 7, 42)
    text = (
        f"Message-ID: {a}\r\nReferences: <x@elsewhere.example>{b}\r\n"
        f"Message-ID: {b.strip('<>')}\r\n"  # a feedback loop's bare spelling
        f'"messageId": "{a.strip("<>")}", and at the end of a sentence {b.strip("<>")}.'
    )
    assert find_message_ids(text) == [a, b]
    assert [read_message_id(i, secret_key=settings.secret_key) for i in find_message_ids(text)] == [
        ("7", 41),
        ("7", 42),
    ]


def test_lookalikes_inside_other_words_are_not_ours(settings: Settings) -> None:
    a = make_message_id(settings, 7, 41).strip("<>")
    assert find_message_ids(f"xwm.{a[3:]} swm.{a[3:]}") == []
    assert find_message_ids("wm.7.41.0123456789abcdef") == []  # no domain: not an id
    forged = re.sub(r"\.[0-9a-f]{16}@", "." + "0" * 16 + "@", a)
    assert find_message_ids(forged) == [f"<{forged}>"]  # shaped like ours…
    assert read_message_id(f"<{forged}>", secret_key=settings.secret_key) is None  # …not ours
