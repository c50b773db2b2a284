"""The subscriber's whole journey in a real browser against a running ``weekly-mailer serve``.

Chromium (Debian's, driven by Playwright) signs up; the confirmation e-mail is read from a real
aiosmtpd server; the link is opened and confirmed; an issue is sent with ``weekly-mailer send``;
its unsubscribe link is opened and the button pressed; the database says unsubscribed. Every
link in both e-mails is also fetched the way a link scanner does (GET, no cookies) and must
change nothing. Screenshots of each page go to ``tests/artifacts/web/``.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from tests.support.smtpd import Received, SMTPServer, wait_for_mail
from tests.support.web import snapshot, subscriber
from tests.support.web_server import ARTICLE, Server, run_cli
from weekly_mailer.config import Settings
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import SubscriberStatus

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"
ADDRESS = "dana.reader@example.org"


def _parts(received: Received) -> tuple[EmailMessage, str, str]:
    msg = email.message_from_bytes(received.data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text_part = msg.get_body(("plain",))
    html_part = msg.get_body(("html",))
    assert text_part is not None and html_part is not None
    return msg, text_part.get_content(), html_part.get_content()


def _links(base: str, text: str, html_body: str) -> list[str]:
    """Every http(s) link into our site, from the HTML hrefs and the plain text."""
    found = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', html_body)]
    found += re.findall(r"https?://[^\s<>\"')\]]+", text)
    return sorted({u for u in found if u.startswith(base)})


def _scan(urls: list[str]) -> list[int]:
    """GET each link like a scanner: no cookies, follow nothing but the first answer."""
    codes = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                r.read()
                codes.append(r.status)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
    return codes


def test_sign_up_confirm_receive_and_unsubscribe_in_a_real_browser(tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    article = tmp_path / "lanterns.md"
    article.write_text(ARTICLE, encoding="utf-8")
    db_url = f"sqlite:///{tmp_path / 'web.db'}"
    with SMTPServer() as smtp:
        env = {
            "WEEKLY_MAILER_DATABASE_URL": db_url,
            "WEEKLY_MAILER_BACKEND_URL": smtp.url,
            "WEEKLY_MAILER_SECRET_KEY": "browser-test-secret",
            "WEEKLY_MAILER_FROM_ADDRESS": "Canal Notes <news@example.org>",
            "WEEKLY_MAILER_LIST_NAME": "Canal Notes",
            "WEEKLY_MAILER_LIST_ID": "canal.example.org",
            "WEEKLY_MAILER_POSTAL_ADDRESS": "1 Towpath Lane, Millbridge",
        }
        upgraded = run_cli(tmp_path, env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        server = Server(tmp_path, env)
        env["WEEKLY_MAILER_BASE_URL"] = server.url
        db = Database(Settings(database_url=db_url))
        try:
            with server, sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 800, "height": 900})
                console_errors: list[str] = []  # e.g. a CSP violation of our own pages
                page.on(
                    "console",
                    lambda m: console_errors.append(m.text) if m.type == "error" else None,
                )

                def shot(name: str) -> None:
                    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

                # 1. Sign up.
                page.goto(server.url + "/")
                assert page.title().startswith("Subscribe")
                shot("01-signup")
                page.set_viewport_size({"width": 375, "height": 800})  # a phone
                assert page.evaluate("document.documentElement.scrollWidth") <= 375
                shot("01-signup-375px")
                page.set_viewport_size({"width": 800, "height": 900})
                page.fill("#email", ADDRESS)
                page.fill("#name", "Dana Reader")
                page.click("button[type=submit]")
                page.wait_for_selector("text=Check your inbox")
                shot("02-check-inbox")
                pending = subscriber(db, ADDRESS)
                assert pending is not None and pending.status == SubscriberStatus.PENDING

                # 2. The confirmation e-mail, at the SMTP server; a scanner fetches its links.
                confirmation, text, html_body = _parts(wait_for_mail(smtp, ADDRESS, 1))
                assert confirmation["To"].addresses[0].addr_spec == ADDRESS
                links = _links(server.url, text, html_body)
                confirm_urls = [u for u in links if "/confirm/" in u]
                assert confirm_urls, links
                before = snapshot(db)
                assert set(_scan(links)) == {200}
                assert snapshot(db) == before, "a GET of a link in the e-mail changed the database"

                # 3. Open the link, press the button.
                page.goto(confirm_urls[0])
                page.wait_for_selector("#confirm")
                shot("03-confirm")
                page.click("#confirm")
                page.wait_for_selector("text=Welcome aboard")
                shot("04-confirmed")
                active = subscriber(db, ADDRESS)
                assert active is not None and active.status == SubscriberStatus.ACTIVE

                # 4. An issue goes out through the real CLI and arrives.
                sent = run_cli(tmp_path, env, "send", str(article), "--yes")
                assert sent.returncode == 0, sent.stdout + sent.stderr
                issue, text, html_body = _parts(wait_for_mail(smtp, ADDRESS, 2))
                assert "Lanterns Along the Canal" in str(issue["Subject"]) + html_body
                header = str(issue["List-Unsubscribe"])
                unsubscribe_url = re.findall(r"<(https?://[^>]+)>", header)[0]
                assert unsubscribe_url.startswith(server.url + "/unsubscribe/")
                assert issue["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                links = _links(server.url, text, html_body)
                assert unsubscribe_url in links
                before = snapshot(db)
                assert set(_scan(links)) == {200}
                assert snapshot(db) == before, "a GET of a link in the issue changed the database"
                archive_links = [u for u in links if "/archive/" in u]
                assert archive_links, links  # the "view in browser" link
                page.goto(archive_links[0])
                page.wait_for_selector("text=Lanterns Along the Canal")
                assert ADDRESS not in page.content() and "Dana" not in page.content()
                shot("05-view-in-browser")
                page.goto(server.url + "/archive")
                page.click("text=Lanterns Along the Canal")
                page.wait_for_selector("text=volunteers of the canal society")

                # 5. Unsubscribe from the issue's link.
                page.goto(unsubscribe_url)
                page.wait_for_selector("#unsubscribe")
                shot("06-unsubscribe")
                page.click("#unsubscribe")
                page.wait_for_selector("text=You are unsubscribed")
                shot("07-unsubscribed")
                browser.close()
                assert console_errors == []
            gone = subscriber(db, ADDRESS)
            assert gone is not None and gone.status == SubscriberStatus.UNSUBSCRIBED
            assert server.stop() == 0
            assert "Stopped." in server.output()
        finally:
            db.close()
