"""What a pre-flight check says: one line, its level, and whether the send itself cannot work."""

from __future__ import annotations

import dataclasses

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One check's verdict. ``what`` is the line shown (a failure spells out its fix);
    ``fatal`` marks a relay failure that makes any send fail (``send`` stops before storing)."""

    name: str
    level: str
    what: str
    fatal: bool = False

    @property
    def failed(self) -> bool:
        return self.level == FAIL


def ok(name: str, what: str) -> Check:
    return Check(name, OK, what)


def warn(name: str, what: str) -> Check:
    return Check(name, WARN, what)


def fail(name: str, what: str, *, fatal: bool = False) -> Check:
    return Check(name, FAIL, what, fatal)
