"""``SqlOutbox``: the outbox as the delivery engine sees it (``delivery.ports.Outbox``), on a
sessionmaker.

The engine knows six verbs and none of SQL: claim a batch, record results, release what it
holds, extend (renew) its leases, ask when the next row is due, finish the issues with nothing
left. Each verb is one transaction of its own, opened here, and each turns the database errors
that mean "not now" into ``DatabaseUnavailableError`` (``store.db.outage_guard``), the outage
the delivery runner waits out. What a result means beyond the outbox row (a subscriber's
bounce, a refusal's pause, the metrics) is the engine's business: it hands its ``Effects`` in,
and they run in the same transaction, for the outcomes the fence let through only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from weekly_mailer.clock import utcnow
from weekly_mailer.errors import DatabaseUnavailableError
from weekly_mailer.store.db import outage_guard
from weekly_mailer.store.outbox import claims, issue_rows, pacing
from weekly_mailer.store.outbox.rows import ClaimedRow, Outcome, StaleRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


class Watch(Protocol):
    """Told when a verb meets an outage and when one reaches the database again (from any
    thread that calls the port: the delivering one, the recorder, the heartbeat)."""

    def failed(self, exc: Exception) -> None: ...

    def reached(self) -> None: ...


class Effects(Protocol):
    """What results mean beyond their outbox rows, written in the same transaction."""

    def recorded(
        self, session: Session, outcomes: Sequence[Outcome], *, bounces: Sequence[int],
        now: dt.datetime,
    ) -> None: ...  # fmt: skip

    def stale(self, session: Session, rows: Sequence[StaleRow], *, now: dt.datetime) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """A claim's rows, how many it skipped (their reader left) and the stale rows it failed."""

    rows: list[ClaimedRow]
    skipped: int = 0
    stale: list[StaleRow] = dataclasses.field(default_factory=list)


class SqlOutbox:
    """The outbox of one worker (``owner``), for one issue (``issue_id``), one ``kind`` of rows,
    or every sending issue and every confirmation. ``last_ok``: when a verb last reached the
    database (monotonic); ``watch``: told of each outage as a verb meets it, and of its end
    (``delivery.outages``: the outage's lines are said then, not when the worker gives up)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        owner: str,
        lease_seconds: float,
        effects: Effects,
        issue_id: int | None = None,
        kind: str | None = None,
        pace: pacing.Pace | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.pace = pace if pace is not None and pace.active else None
        self.clock = clock
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.effects = effects
        self.issue_id = issue_id
        self.kind = kind
        self.last_ok = time.monotonic()
        self.watch: Watch | None = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Session]:
        """One verb's transaction: outages mapped (``outage_guard``) and told to ``watch``,
        ``last_ok`` stamped."""
        try:
            with outage_guard(), self.sessions.begin() as session:
                yield session
        except DatabaseUnavailableError as exc:
            if self.watch is not None:
                self.watch.failed(exc)
            raise
        self.last_ok = time.monotonic()
        if self.watch is not None:
            self.watch.reached()

    def claim(
        self, limit: int, *, now: dt.datetime, stale_after: dt.timedelta | None = None
    ) -> Claim:
        """Lease up to ``limit`` due rows (``claims.claim``) within the pace (``pacing.py``:
        ``daily_quota``, the warm-up); with ``stale_after``, first fail the open rows older
        than that (``fail_stale_rows``)."""
        with self._transaction() as session:
            spent: pacing.Budget | None = None
            if self.pace is not None:
                pacing.lock(session)
                spent = pacing.budget(session, self.pace, now=now)
            stale: list[StaleRow] = []
            if stale_after is not None:
                stale = issue_rows.fail_stale_rows(
                    session, now=now, max_age=stale_after, issue_id=self.issue_id, kind=self.kind,
                    also=None if spent is None else pacing.spared(now, stale_after),
                )  # fmt: skip
                self.effects.stale(session, stale, now=now)
            if spent is not None and spent.total is not None:
                limit = min(limit, spent.total)
            rows: list[ClaimedRow] = []
            skipped = 0
            if limit > 0:
                rows, skipped = claims.claim(
                    session,
                    owner=self.owner,
                    now=now,
                    lease_seconds=self.lease_seconds,
                    limit=limit,
                    issue_id=self.issue_id,
                    kind=self.kind,
                    copies=None if spent is None else spent.copies,
                )
            if spent is not None:
                pacing.opened(session, spent, rows, now=now)
        return Claim(rows, skipped, stale)

    def record(
        self, outcomes: Sequence[Outcome], *, now: dt.datetime, bounces: Sequence[int] = ()
    ) -> list[Outcome]:
        """Write results under the fence (``claims.record``) and their effects; returns the
        outcomes written."""
        if not outcomes and not bounces:
            return []
        with self._transaction() as session:
            written = claims.record(session, outcomes, owner=self.owner, now=now)
            self.effects.recorded(session, written, bounces=bounces, now=now)
        return written

    def release(self, rows: Sequence[ClaimedRow] | None = None) -> int:
        """Hand back every row this worker holds, or those of ``rows`` it still holds."""
        with self._transaction() as session:
            n = claims.release(session, owner=self.owner, rows=rows)
        return n

    def hand_back(self, owner: str, tokens: Sequence[str]) -> int:
        """Hand back the rows a dead worker (``owner``; its journal's lock is free) still held
        under the claims of ``tokens``, those its journal noted; nothing of another claim."""
        with self._transaction() as session:
            n = claims.release(session, owner=owner, tokens=tokens)
        return n

    def extend(self, *, now: dt.datetime) -> list[tuple[int, str]]:
        """Renew every lease this worker holds; the ``(id, lease_token)`` of the rows renewed."""
        with self._transaction() as session:
            held = claims.renew(
                session, owner=self.owner, now=now, lease_seconds=self.lease_seconds
            )
        return held

    def next_due(self) -> dt.datetime | None:
        """When the next open row of this worker's scope becomes claimable: under a pace,
        not before the pace lets it go (the next slot of ``daily_quota``, the warm-up's next
        sending day), so a worker sleeps until then instead of claiming nothing again."""
        with self._transaction() as session:
            if self.pace is None:
                return issue_rows.next_due(session, issue_id=self.issue_id, kind=self.kind)
            spent = pacing.budget(session, self.pace, now=self.clock())
            copies = others = None
            if self.kind != "confirmation":
                copies = issue_rows.next_due(
                    session, issue_id=self.issue_id, kind=None if self.issue_id else "issue"
                )
            if self.issue_id is None and self.kind != "issue":
                others = issue_rows.next_due(session, kind="confirmation")
            due = pacing.waits_until(spent, copies_due=copies, others_due=others)
        return due

    def finish(self, *, now: dt.datetime) -> list[int]:
        """Mark the sending issues of this scope with no open rows left as sent."""
        ids = [self.issue_id] if self.issue_id is not None else []
        with self._transaction() as session:
            done = issue_rows.finish_done(session, now=now, issue_ids=ids)
        return done

    def counts(self, issue_id: int) -> dict[str, int]:
        """Rows per delivery state of one issue (``issue_rows.counts``)."""
        with self._transaction() as session:
            found = issue_rows.counts(session, issue_id)
        return found

    def accept(self, entries: Sequence[tuple[int, str, int, dt.datetime]]) -> int:
        """Record as sent what a journal says the server accepted (``claims.mark_accepted``)."""
        with self._transaction() as session:
            n = claims.mark_accepted(session, entries)
        return n
