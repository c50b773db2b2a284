"""Issues: which week, which article, the week ledger, ``prepare_week`` and the reports.

- :mod:`.weeks`: which send week a moment belongs to, and when its send is due.
- :mod:`.keys` and :mod:`.sources`: which article a week takes, and what "already sent" means.
- :mod:`.ledger`: one issue row per send week (the database guarantees it).
- :mod:`.prepare`: the one path that makes a week's issue (``look_at_week``, ``plan_week``,
  ``prepare_week``) for ``send``, ``demo`` and the daemon's job.
- :mod:`.service`: the week's window, compose once, enqueue, retry.
- :mod:`.reports`: per-state counts, failures, samples.
- :mod:`.health`: each issue's hard-bounce and complaint rates; the guard that holds the next
  weekly send when one passes its limit (the holds are ledger rows, released by an operator).
- :mod:`.retention` and :mod:`.archive_file`: ``issues archive`` (old delivery rows to a file of
  one complete gzip member per issue, their counts kept on the issue).

Functions take a session and never commit: the edge (CLI, scheduler job, demo) owns it.
"""

from __future__ import annotations

from weekly_mailer.errors import IssueNotFoundError
from weekly_mailer.issues.health import IssueHealth, guard, held, issue_health, refusal
from weekly_mailer.issues.keys import (
    feed_key,
    file_key,
    file_key_name,
    is_feed_source,
    source_key,
)
from weekly_mailer.issues.ledger import (
    RECORDED_EMPTY,
    active_holds,
    any_issue,
    fill_recorded_week,
    get_issue,
    issue_for_week,
    last_recorded_week,
    recent_holds,
    record_week,
    release_holds,
    sent_source_keys,
    store_issue,
)
from weekly_mailer.issues.prepare import (
    NO_SUBSCRIBERS,
    ExistingIssue,
    Prepared,
    WeekLook,
    WeekPlan,
    look_at_week,
    plan_week,
    prepare_week,
)
from weekly_mailer.issues.reports import (
    FailureRow,
    active_count,
    active_sample,
    counts,
    failures,
    list_issues,
    open_count,
    open_sample,
)
from weekly_mailer.issues.service import Retried, compose, enqueue, retry, week_window
from weekly_mailer.issues.weeks import next_scheduled_send, send_week_for, week_note

__all__ = [
    "NO_SUBSCRIBERS",
    "RECORDED_EMPTY",
    "ExistingIssue",
    "FailureRow",
    "IssueHealth",
    "IssueNotFoundError",
    "Prepared",
    "Retried",
    "WeekLook",
    "WeekPlan",
    "active_count",
    "active_holds",
    "active_sample",
    "any_issue",
    "compose",
    "counts",
    "enqueue",
    "failures",
    "feed_key",
    "file_key",
    "file_key_name",
    "fill_recorded_week",
    "get_issue",
    "guard",
    "held",
    "is_feed_source",
    "issue_health",
    "issue_for_week",
    "last_recorded_week",
    "list_issues",
    "look_at_week",
    "open_count",
    "open_sample",
    "plan_week",
    "prepare_week",
    "recent_holds",
    "record_week",
    "refusal",
    "release_holds",
    "retry",
    "send_week_for",
    "next_scheduled_send",
    "week_note",
    "sent_source_keys",
    "source_key",
    "store_issue",
    "week_window",
]
