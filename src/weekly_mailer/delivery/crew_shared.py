"""What a crew of delivery processes shares with its parent (``processes.py`` starts them,
``process_child.py`` is each child): the job, the flags in shared memory, the figures."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weekly_mailer.delivery.breaker import SharedStreak
    from weekly_mailer.delivery.policy import Stats

COUNTED = ("sent", "deferred", "failed", "skipped", "released", "throttled", "slowed", "stale")
PROGRESS_SECONDS = 0.2  # how often a child reports its figures

STOP, HURRY, HALTED = 1, 2, 4


@dataclasses.dataclass(frozen=True)
class Events:
    """The parent's word to its children, in shared memory the children poll (no locks, so a
    child that dies cannot block the parent): ``flags`` holds STOP, HURRY (a second Ctrl-C)
    and HALTED (another child's breaker tripped; ``reason`` holds its message); ``wakes``
    counts the parent's wake-ups (a row was committed: look now). ``streak`` is the circuit
    breaker's count of identical refusals in a row, the children's together (only they touch
    its lock); ``metrics`` the directory their metrics go to (``None``: off)."""

    flags: Any  # a RawValue("i")
    reason: Any  # a RawArray("c")
    streak: SharedStreak
    wakes: Any  # a RawValue("i")
    metrics: str | None = None

    def raise_flag(self, flag: int) -> None:
        if not self.flags.value & flag:
            self.flags.value |= flag  # only the parent writes

    def wait_for(self, flag: int) -> None:
        while not self.flags.value & flag:
            time.sleep(0.05)

    def wake(self) -> None:
        self.wakes.value = (self.wakes.value + 1) % (1 << 30)  # only the parent writes


@dataclasses.dataclass(frozen=True)
class Job:
    """What each child runs: a ``Worker(**scope)`` under ``outages.ride_out(until_idle=…,
    max_wait=…, poll=…, forever=…)``."""

    scope: dict[str, Any]
    until_idle: bool = True
    max_wait: float = 60.0
    forever: bool = False
    poll: float = 1.0
    retry_pause: float | None = None


def figures(stats: Stats) -> dict[str, int]:
    return {name: int(getattr(stats, name)) for name in COUNTED}
