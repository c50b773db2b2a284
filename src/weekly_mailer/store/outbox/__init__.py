"""The outbox: one delivery row per (issue, subscriber), one per confirmation e-mail (``kind``
``confirmation``, no issue), and every state change on them.

::

    queued ──claim──> sending ──record──> sent | deferred | failed
       ^                 │  └─ subscriber no longer active ──> skipped
       │                 └─ lease expired (worker died) ──> claimable again
       └── release (worker stopped) / retry (failed, deferred) ──┘
    deferred ──(next_attempt_at passes)──> claimable again

Every function takes a session and never commits: the caller owns the transaction. Claims and
results are set-based (one statement per batch, an executemany for results), never a commit per
message. On PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED``; SQLite serialises writers with
``BEGIN IMMEDIATE`` (see ``db.py``).
"""

from weekly_mailer.store.outbox.claims import (
    claim,
    enqueue_confirmation,
    enqueue_mail,
    extend_lease,
    mark_accepted,
    open_confirmation,
    record,
    release,
    renew,
    still_held,
)
from weekly_mailer.store.outbox.issue_rows import (
    counts,
    enqueue,
    fail_stale,
    fail_stale_rows,
    finish_done,
    leased_rows,
    next_due,
    refused,
    retry,
)
from weekly_mailer.store.outbox.pauses import pause_domain
from weekly_mailer.store.outbox.rows import OPEN_STATES, ClaimedRow, Outcome, StaleRow

__all__ = [
    "OPEN_STATES",
    "ClaimedRow",
    "Outcome",
    "StaleRow",
    "claim",
    "counts",
    "enqueue",
    "enqueue_confirmation",
    "enqueue_mail",
    "extend_lease",
    "mark_accepted",
    "fail_stale",
    "fail_stale_rows",
    "finish_done",
    "leased_rows",
    "next_due",
    "open_confirmation",
    "pause_domain",
    "record",
    "refused",
    "release",
    "renew",
    "retry",
    "still_held",
]
