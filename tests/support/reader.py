"""Helpers for the reader's-page tests: every row of every table, links in a message."""

from __future__ import annotations

import email
import email.policy
import html
import re
from email.message import EmailMessage
from typing import Any

from sqlalchemy import inspect, text

from weekly_mailer.store.db import Database


def every_row(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the database (Alembic's too), for before/after checks."""
    with db.engine.connect() as conn:
        tables = sorted(inspect(conn).get_table_names())
        return {
            t: sorted((tuple(r) for r in conn.execute(text(f'SELECT * FROM "{t}"'))), key=repr)
            for t in tables
        }


def traces(db: Database, needle: str) -> list[str]:
    """``table.column`` of every value that holds ``needle`` (any case), in every table."""
    found = []
    needle = needle.lower()
    with db.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            result = conn.execute(text(f'SELECT * FROM "{table}"'))
            columns = list(result.keys())
            for row in result:
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    if value is not None and needle in str(value).lower():
                        found.append(f"{table}.{column}")
    return sorted(set(found))


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def urls(data: bytes) -> list[str]:
    """Every http(s) URL in a message: headers, every text part (plain and HTML)."""
    msg = parse(data)
    found = re.findall(r"<(https?://[^>]+)>", str(msg.get("List-Unsubscribe", "")))
    for part in msg.walk():
        if part.get_content_maintype() != "text":
            continue
        content = part.get_content()
        found += [html.unescape(u) for u in re.findall(r'href="([^"]+)"', content)]
        found += re.findall(r"https?://[^\s<>\"')\]]+", content)
    return sorted(set(found))


def text_of(data: bytes) -> str:
    part = parse(data).get_body(("plain",))
    assert part is not None
    return str(part.get_content())
