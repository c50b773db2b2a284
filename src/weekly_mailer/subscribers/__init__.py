"""Subscribers: the rules (``rules.py``) and subscriber files (``files.py``).

Functions here take an open session and never commit: the caller (a CLI command, a web request,
a scheduler job) owns the transaction. Every status change writes a ``SubscriberEvent``.
"""

from __future__ import annotations

from weekly_mailer.compose.names import MAX_NAME
from weekly_mailer.subscribers.files import (
    EXPORT_FIELDS,
    ImportReport,
    RowError,
    export_row,
    import_file,
    import_rows,
    parse_rows,
    write_export,
)
from weekly_mailer.subscribers.rules import (
    add,
    clean_name,
    confirm,
    count,
    expire_pending,
    get_by_email,
    iter_subscribers,
    normalise_address,
    note_bounce,
    record,
    remove,
    request_subscription,
    unsubscribe,
)

__all__ = [
    "EXPORT_FIELDS",
    "MAX_NAME",
    "ImportReport",
    "RowError",
    "add",
    "clean_name",
    "confirm",
    "count",
    "expire_pending",
    "export_row",
    "get_by_email",
    "import_file",
    "import_rows",
    "iter_subscribers",
    "normalise_address",
    "note_bounce",
    "parse_rows",
    "record",
    "remove",
    "request_subscription",
    "unsubscribe",
    "write_export",
]
