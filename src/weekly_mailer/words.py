"""Counted words for the lines people read: ``1 issue``, ``2 issues``."""

from __future__ import annotations


def plural(n: int, word: str, many: str = "", *, commas: bool = False) -> str:
    """``n`` and ``word`` in agreement: ``plural(1, "issue")`` is ``1 issue``, ``plural(3,
    "issue")`` ``3 issues``; ``many`` for an irregular plural; ``commas``: ``1,000``."""
    count = f"{n:,}" if commas else str(n)
    return f"{count} {word if n == 1 else many or word + 's'}"
