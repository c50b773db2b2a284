"""The ports of the delivery engine: what the worker needs of the outbox, and the effects of a
result beyond its row.

The worker knows the ``Outbox`` protocol and nothing of SQL; ``store.outbox.SqlOutbox`` is the
implementation on a database, and a test may hand in its own. Every verb raises
``DatabaseUnavailableError`` when the database cannot be reached now: the runner's outage.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from weekly_mailer.delivery.backends.base import Envelope
    from weekly_mailer.store.outbox import ClaimedRow, Outcome
    from weekly_mailer.store.outbox.port import Claim, Watch

__all__ = ["Outbox", "RenderFn", "Renderers"]

RenderFn = Callable[["ClaimedRow"], "Envelope"]


class Renderers(Protocol):
    """Gives the personalising function of an issue (loaded once per issue), and the function
    that builds a confirmation e-mail (loaded once)."""

    def for_issue(self, issue_id: int) -> RenderFn: ...

    def for_confirmations(self) -> RenderFn: ...


class Outbox(Protocol):
    """One worker's view of the outbox (its owner name, its scope, its lease length)."""

    owner: str
    last_ok: float  # when a verb last reached the database (time.monotonic())
    watch: Watch | None  # told of each outage a verb meets, and of its end


    def claim(
        self, limit: int, *, now: dt.datetime, stale_after: dt.timedelta | None = None
    ) -> Claim:
        """Lease up to ``limit`` due rows under a new token; with ``stale_after``, fail the
        open rows older than that first."""
        ...

    def record(
        self, outcomes: Sequence[Outcome], *, now: dt.datetime, bounces: Sequence[int] = ()
    ) -> list[Outcome]:
        """Write results where their claim still holds the row (and their effects); returns
        those written."""
        ...

    def release(self, rows: Sequence[ClaimedRow] | None = None) -> int:
        """Hand back every row held (or those of ``rows`` still held)."""
        ...

    def hand_back(self, owner: str, tokens: Sequence[str]) -> int:
        """Hand back the rows a dead ``owner`` still held under the claims of ``tokens``."""
        ...

    def extend(self, *, now: dt.datetime) -> list[tuple[int, str]]:
        """Renew every lease held; returns the ``(id, lease_token)`` of the rows renewed."""
        ...

    def next_due(self) -> dt.datetime | None:
        """When the next open row of the scope becomes claimable (``None``: nothing open)."""
        ...

    def finish(self, *, now: dt.datetime) -> list[int]:
        """Mark the scope's sending issues with nothing open left as sent."""
        ...

    def counts(self, issue_id: int) -> dict[str, int]:
        """Rows per delivery state of one issue."""
        ...

    def accept(self, entries: Sequence[tuple[int, str, int, dt.datetime]]) -> int:
        """Record as sent what a journal says the server accepted, under its claim's token."""
        ...
