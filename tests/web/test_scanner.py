"""Link scanners and prefetchers: GETs of every link in an issue and in the confirmation e-mail
(as a mail filter fetches them: no cookies, no forms) change nothing in the database."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html
import re
from email.message import EmailMessage

from flask import Flask
from flask.testing import FlaskClient

from tests.support.web import flush_mail, sign_up, snapshot, subscriber
from weekly_mailer.articles.markdown import parse_markdown
from weekly_mailer.compose import (
    Recipient,
    compose_issue,
    make_message_id,
    unsubscribe_url,
)
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Issue, IssueStatus, SubscriberStatus

pytest_plugins = ["tests.support.web_fixtures"]

ARTICLE = """---
title: The Orchard Ledger
date: 2026-11-18
author: Tomas Alder
summary: A village keeps a shared record of every fruit tree on its common land.
---

Every autumn the village walks its common land with a notebook. Each tree gets a line: its
age, its crop, the names of the families who pick from it.

The ledger is now in its ninth year, and the [county archive](https://archive.example.net/)
keeps a copy.
"""


def _links(data: bytes, base: str) -> list[str]:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    found = re.findall(r"<(https?://[^>]+)>", str(msg.get("List-Unsubscribe", "")))
    for kind in ("plain", "html"):
        part = msg.get_body((kind,))
        assert part is not None
        content = part.get_content()
        found += [html.unescape(u) for u in re.findall(r'href="([^"]+)"', content)]
        found += re.findall(r"https?://[^\s<>\"')\]]+", content)
    return sorted({u for u in found if u.startswith(base)})


def test_scanning_every_link_in_both_emails_changes_nothing(
    app: Flask,
    client: FlaskClient,
    database: Database,
    backend: MemoryBackend,
    web_settings: Settings,
) -> None:
    base = web_settings.base_url
    # The confirmation e-mail of a fresh sign-up.
    sign_up(client, "eve@example.org", "Eve")
    flush_mail(app)
    confirmation = backend.sent[0].data
    # An issue as it is delivered to an active subscriber, and its archive row.
    sign_up(client, "fay@example.org", "Fay")
    flush_mail(app)
    fay = subscriber(database, "fay@example.org")
    assert fay is not None
    week = dt.date(2026, 11, 18)
    composed = compose_issue(parse_markdown(ARTICLE), web_settings, send_week=week)
    with database.sessions.begin() as session:
        session.add(
            Issue(
                send_week=week,
                status=IssueStatus.SENT.value,
                title="The Orchard Ledger",
                subject=composed.subject,
                slug="the-orchard-ledger",
                archive_html=composed.archive_html,
            )
        )
    issue = composed.message_for(
        Recipient(
            fay.id, fay.email, fay.name, unsubscribe_url(web_settings, fay.id, fay.email_key)
        ),
        message_id=make_message_id(web_settings, week, fay.id),
        date=dt.datetime(2026, 11, 19, 2, tzinfo=dt.UTC),
    )
    links = _links(confirmation, base) + _links(issue, base)
    kinds = {re.sub(r"^/(\w+).*", r"\1", u.removeprefix(base)) for u in links}
    assert {"confirm", "unsubscribe", "archive"} <= kinds, links

    scanner = app.test_client(use_cookies=False)
    before = snapshot(database)
    for url in links:
        for method in (scanner.get, scanner.head):
            response = method(url.removeprefix(base))
            assert response.status_code == 200, url
    assert snapshot(database) == before
    for address in ("eve@example.org", "fay@example.org"):
        sub = subscriber(database, address)
        assert sub is not None and sub.status == SubscriberStatus.PENDING
    # The archive copy carries no one's address.
    page = scanner.get(f"/archive/{week.isoformat()}").get_data(as_text=True)
    assert "fay@example.org" not in page and "eve@example.org" not in page
