"""The reader's own page in a real browser (Debian's Chromium, Playwright) against a running
``weekly-mailer serve`` whose mail goes to an aiosmtpd server: the manage link of a received
issue, rename, pause for two issues (the next two weekly sends skip the reader, the third
reaches them), the data copy, "Lost your link?", a move confirmed at the new address (and not
before) with the old address told, and "Forget me" (no trace of either address in any column of
any table; an import keeps them off). Then a scanner GETs and HEADs every URL of every message
the SMTP server received, and no row of any table changes.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from tests.support.reader import every_row, parse, text_of, traces, urls
from tests.support.smtpd import SMTPServer, wait_for_mail
from tests.support.web import subscriber
from tests.support.web_server import Server, run_cli
from weekly_mailer.config import Settings
from weekly_mailer.store.db import Database

pytestmark = [pytest.mark.slow, pytest.mark.browser]

READER, OTHER, NEW = "dana.reader@example.org", "omar.other@example.org", "dana.new@example.org"
ARTICLE = """---
title: {title}
date: {date}
author: Mira Okafor
summary: A note on the towpath lanterns, week {n}.
---

The volunteers of the canal society hung {n} more lanterns between the lock and the mill this
week, and the rota for cleaning them is full until spring.
"""


def _send_week(settings: Settings, db: Database, tmp_path: Path, n: int, at: dt.datetime) -> None:
    """One weekly send for the week of ``at`` (as the scheduler's job does it), delivered."""
    from weekly_mailer.delivery import resolve_backend
    from weekly_mailer.delivery.run import deliver_issue
    from weekly_mailer.issues.prepare import look_at_week, plan_week, prepare_week

    article = tmp_path / f"week{n}.md"
    article.write_text(
        ARTICLE.format(title=f"Lanterns, week {n}", date=at.date().isoformat(), n=n), "utf-8"
    )
    with db.sessions.begin() as session:
        look = look_at_week(session, settings, now=at)
    plan = plan_week(look, settings, source=str(article))
    with db.sessions.begin() as session:
        issue_id = prepare_week(session, plan, now=at).issue.id
    with resolve_backend(settings) as backend:
        deliver_issue(
            db.sessions, settings, backend, issue_id, stop=threading.Event(), max_wait=2,
            clock=lambda: at + dt.timedelta(minutes=1),
        )  # fmt: skip


def _subjects(smtp: SMTPServer, address: str) -> list[str]:
    return [str(parse(m.data)["Subject"]) for m in smtp.to(address)]


def _scan(found: list[str]) -> set[int]:
    codes = set()
    for url in found:
        for method in ("GET", "HEAD"):
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, method=method), timeout=10
                ) as r:
                    r.read()
                    codes.add(r.status)
            except urllib.error.HTTPError as exc:
                codes.add(exc.code)
    return codes


def test_the_readers_page_in_a_real_browser(tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    db_url = f"sqlite:///{tmp_path / 'reader.db'}"
    with SMTPServer() as smtp:
        env = {
            "WEEKLY_MAILER_DATABASE_URL": db_url,
            "WEEKLY_MAILER_BACKEND_URL": smtp.url,
            "WEEKLY_MAILER_SECRET_KEY": "reader-test-secret",
            "WEEKLY_MAILER_FROM_ADDRESS": "Canal Notes <news@example.org>",
            "WEEKLY_MAILER_LIST_NAME": "Canal Notes",
        }
        assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
        for address, name in ((READER, "Dana"), (OTHER, "Omar")):
            added = run_cli(
                tmp_path, env, "subscribers", "add", address, "--name", name, "--confirmed"
            )
            assert added.returncode == 0, added.stderr
        server = Server(tmp_path, env)
        env["WEEKLY_MAILER_BASE_URL"] = server.url
        settings = Settings(
            database_url=db_url,
            backend_url=smtp.url,
            secret_key="reader-test-secret",
            from_address="Canal Notes <news@example.org>",
            list_name="Canal Notes",
            base_url=server.url,
        )
        db = Database(settings)
        try:
            with server, sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page()
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

                # A week's send; the manage link in the received issue (text and HTML).
                week1 = dt.datetime(2026, 12, 10, 3, 0, tzinfo=dt.UTC)
                _send_week(settings, db, tmp_path, 1, week1)
                issue = wait_for_mail(smtp, READER, 1)
                links = [u for u in urls(issue.data) if "/manage/" in u]
                assert len(links) == 1 and links[0] in text_of(issue.data), links
                manage = links[0]
                page.goto(manage)
                page.wait_for_selector("#address")
                assert page.inner_text("#address") == READER
                assert "active" in page.inner_text("#status")
                assert "confirmed" in page.inner_text("#consent")

                # Rename.
                page.fill("#name", "Dana Lind")
                page.click("#rename")
                page.wait_for_selector("text=Your name was changed")
                sub = subscriber(db, READER)
                assert sub is not None and sub.name == "Dana Lind"

                # Pause for 2 issues: weeks 2 and 3 skip Dana, week 4 reaches her.
                page.select_option("#issues", "2")
                page.click("#pause")
                page.wait_for_selector("text=paused for the next 2 issues")
                listed = run_cli(tmp_path, env, "subscribers", "list")
                assert f"{READER}\tactive\tDana Lind" in listed.stdout
                assert "paused for 2 issues" in listed.stdout
                assert run_cli(tmp_path, env, "subscribers", "count", "--paused").stdout == "1\n"
                for n in (2, 3, 4):
                    _send_week(settings, db, tmp_path, n, week1 + dt.timedelta(weeks=n - 1))
                wait_for_mail(smtp, OTHER, 4)
                wait_for_mail(smtp, READER, 2)
                subjects = _subjects(smtp, READER)
                assert [s for s in subjects if "Lanterns" in s] == [
                    "Lanterns, week 1",
                    "Lanterns, week 4",
                ], subjects
                assert len([s for s in _subjects(smtp, OTHER) if "Lanterns" in s]) == 4

                # Email me my data: a JSON attachment, not shown on the page.
                page.goto(manage)
                page.click("#data")
                page.wait_for_selector("text=A copy of your data is on its way")
                data_mail = wait_for_mail(smtp, READER, 3)
                [attachment] = list(parse(data_mail.data).iter_attachments())
                copy = json.loads(attachment.get_content())
                assert copy["subscriber"]["email"] == READER
                assert copy["subscriber"]["name"] == "Dana Lind"
                assert "paused" in [e["kind"] for e in copy["events"]]

                # Lost your link?
                page.goto(server.url + "/manage")
                page.fill("#email", READER)
                page.click("#send-link")
                page.wait_for_selector("text=Check your inbox")
                [lost] = [u for u in urls(wait_for_mail(smtp, READER, 4).data) if "/manage/" in u]
                page.goto(lost)  # a fresh token (its own time stamp) for the same page
                assert page.inner_text("#address") == READER

                # Move: nothing changes until the link is opened at the new address.
                page.goto(manage)
                page.fill("#email", NEW)
                page.click("#move")
                page.wait_for_selector("text=A link is on its way to the new address")
                move_mail = wait_for_mail(smtp, NEW, 1)
                assert subscriber(db, READER) is not None and subscriber(db, NEW) is None
                [move_link] = [u for u in urls(move_mail.data) if "/manage/move/" in u]
                page.goto(move_link)
                page.wait_for_selector("#confirm-move")
                assert subscriber(db, NEW) is None  # the GET changed nothing
                page.click("#confirm-move")
                page.wait_for_selector("text=now goes to")
                assert subscriber(db, READER) is None
                moved = subscriber(db, NEW)
                assert moved is not None and moved.name == "Dana Lind"
                notice = wait_for_mail(smtp, READER, 5)
                assert f"now goes to {NEW}" in text_of(notice.data)
                page.click("#manage")
                page.wait_for_selector("#address")
                assert page.inner_text("#address") == NEW
                assert f"from {READER} to {NEW}" in page.inner_text("#consent")

                # Forget me.
                page.check("#sure")
                page.click("#forget")
                page.wait_for_selector("text=You are forgotten")
                browser.close()
                assert errors == []

                for address in (READER, NEW, "Dana Lind"):
                    assert traces(db, address) == [], address
                people = tmp_path / "people.csv"
                people.write_text(f"email,name\n{NEW},Dana\n", "utf-8")
                imported = run_cli(
                    tmp_path, env, "subscribers", "import", str(people), "--confirmed"
                )
                assert imported.returncode == 0, imported.stderr
                assert "1 kept unsubscribed" in imported.stdout
                assert traces(db, NEW) == []

                # The scanner: every URL of every message received, GET and HEAD.
                found = sorted({u for m in smtp.received() for u in urls(m.data)})
                assert any("/manage/move/" in u for u in found), found
                before = every_row(db)
                assert _scan(found) <= {200, 400}
                assert every_row(db) == before, "a GET or HEAD of a link changed a row"
        finally:
            db.close()
