"""Subscribers: the rules (``rules.py``), sign-up (``signup.py``: the one service call behind
the web form and ``subscribers add``, the subscriber and their confirmation e-mail in one
transaction) and subscriber files (``parse.py`` reads them, ``importer.py`` applies the rows,
``export.py`` writes them).

Functions here take an open session and never commit: the caller (a CLI command, a web request,
a scheduler job) owns the transaction. Every status change writes a ``SubscriberEvent``.
"""

from __future__ import annotations

from weekly_mailer.compose.names import MAX_NAME
from weekly_mailer.subscribers.export import EXPORT_FIELDS, export_row, write_export
from weekly_mailer.subscribers.importer import (
    Importer,
    ImportReport,
    import_file,
    import_rows,
    import_source,
)
from weekly_mailer.subscribers.parse import Chunk, ParsedRow, RowError, parse_rows, read_chunks
from weekly_mailer.subscribers.rules import (
    add,
    clean_name,
    complain,
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
    "Chunk",
    "ImportReport",
    "Importer",
    "ParsedRow",
    "RowError",
    "add",
    "clean_name",
    "complain",
    "confirm",
    "count",
    "expire_pending",
    "export_row",
    "get_by_email",
    "import_file",
    "import_rows",
    "import_source",
    "iter_subscribers",
    "normalise_address",
    "note_bounce",
    "parse_rows",
    "read_chunks",
    "record",
    "remove",
    "request_subscription",
    "unsubscribe",
    "write_export",
]
