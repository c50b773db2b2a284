"""The :class:`Article`: what every source turns into, and what the composer reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class Article:
    """One article, whatever its source.

    ``body_html`` is always sanitised (nh3) before it is stored here, so templates may mark it
    safe. ``tags`` maps a label to its values, e.g. ``{"Related locations": ["Cambodia"]}``.
    ``date`` is timezone-aware when the source gave a time, else midnight UTC of the given day.
    """

    title: str
    body_html: str
    date: dt.datetime | None = None
    author: str = ""
    summary: str = ""
    author_bio: str = ""
    tags: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    canonical_url: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored with the issue); :meth:`from_dict` reads it back."""
        data = dataclasses.asdict(self)
        data["date"] = self.date.isoformat() if self.date else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Article:
        """The article saved by :meth:`to_dict`."""
        values = dict(data)
        if values.get("date"):
            values["date"] = dt.datetime.fromisoformat(values["date"])
        values["tags"] = {str(k): [str(x) for x in v] for k, v in values.get("tags", {}).items()}
        return cls(**values)
