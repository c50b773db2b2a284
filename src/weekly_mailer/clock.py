"""The one clock: aware UTC time, passed into whatever needs "now".

Production code takes a ``clock`` argument (default :func:`utcnow`) instead of asking for the
time itself, so tests drive time by passing their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)
