"""The e-mails and the pages as readers see them, in Chromium: the issue and the confirmation as
the SMTP server received them, at 375 px and 600 px, light and dark, never wider than the window;
axe-core finds no violation (WCAG 2 A/AA, colour contrast in the scheme shown) on the e-mails,
the archive pages and every page of the sign-up flow, its error included.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.support.axe import require_axe, violations
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from tests.support.smtpd import SMTPServer, wait_for_mail
from tests.support.web_server import ARTICLE, Server, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ADDRESS = "lee.reader@example.org"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "a11y"


def _html_part(data: bytes) -> str:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def _check_email(browser: Any, name: str, html: str) -> list[str]:
    """Every width and scheme: no horizontal overflow, no axe violation. Returns the problems."""
    problems = []
    for width in (375, 600):
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": width, "height": 900}, color_scheme=scheme, bypass_csp=True
            )
            page = context.new_page()
            page.route("**/*", lambda route: route.abort())  # an e-mail fetches nothing
            page.set_content(html, wait_until="load")
            scroll, inner = page.evaluate(
                "() => [document.documentElement.scrollWidth, window.innerWidth]"
            )
            if scroll > inner:
                problems.append(f"{name} {width}px {scheme}: {scroll}px wide in {inner}px")
            found = violations(page)
            problems += [f"{name} {width}px {scheme}: {v}" for v in found]
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}-{scheme}.png"), full_page=True)
            context.close()
    return problems


def _check_page(page: Any, name: str) -> list[str]:
    page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"), full_page=True)
    return [f"page {name}: {v}" for v in violations(page)]


def test_emails_and_pages_fit_every_width_and_scheme_and_pass_axe(tmp_path: Path) -> None:
    require_browser()
    require_axe()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    article = tmp_path / "lanterns.md"
    article.write_text(ARTICLE, encoding="utf-8")
    db_url = f"sqlite:///{tmp_path / 'web.db'}"
    problems: list[str] = []
    with SMTPServer() as smtp:
        env = {
            "WEEKLY_MAILER_DATABASE_URL": db_url,
            "WEEKLY_MAILER_BACKEND_URL": smtp.url,
            "WEEKLY_MAILER_SECRET_KEY": "a11y-test-secret",
            "WEEKLY_MAILER_FROM_ADDRESS": "Canal Notes <news@example.org>",
            "WEEKLY_MAILER_LIST_NAME": "Canal Notes",
            "WEEKLY_MAILER_LIST_ID": "canal.example.org",
            "WEEKLY_MAILER_POSTAL_ADDRESS": "1 Towpath Lane, Millbridge",
        }
        assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
        server = Server(tmp_path, env)
        env["WEEKLY_MAILER_BASE_URL"] = server.url
        with server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            for scheme in ("light", "dark"):
                context = browser.new_context(
                    viewport={"width": 375, "height": 800}, color_scheme=scheme, bypass_csp=True
                )
                page = context.new_page()
                page.goto(server.url + "/")
                problems += _check_page(page, f"signup-{scheme}")
                # The error, tied to its field.
                page.fill("#email", "not an address@")
                page.evaluate("document.querySelector('form.form').noValidate = true")
                page.click("button[type=submit]")
                page.wait_for_selector("p.error")
                field = page.locator("#email")
                assert field.get_attribute("aria-invalid") == "true"
                described = field.get_attribute("aria-describedby")
                assert described and page.locator(f"#{described}").inner_text().strip()
                problems += _check_page(page, f"signup-error-{scheme}")
                context.close()

            context = browser.new_context(viewport={"width": 375, "height": 800}, bypass_csp=True)
            page = context.new_page()
            page.goto(server.url + "/")
            page.fill("#email", ADDRESS)
            page.click("button[type=submit]")
            page.wait_for_selector("text=Check your inbox")
            problems += _check_page(page, "check-inbox")

            confirmation = wait_for_mail(smtp, ADDRESS, 1)
            confirm_html = _html_part(confirmation.data)
            problems += _check_email(browser, "confirmation", confirm_html)
            confirm_url = re.findall(r'href="([^"]*/confirm/[^"]+)"', confirm_html)[0]
            page.goto(confirm_url.replace("&amp;", "&"))
            page.wait_for_selector("#confirm")
            problems += _check_page(page, "confirm")
            page.click("#confirm")
            page.wait_for_selector("text=Welcome aboard")
            problems += _check_page(page, "confirmed")

            sent = run_cli(tmp_path, env, "send", str(article), "--yes")
            assert sent.returncode == 0, sent.stdout + sent.stderr
            issue_html = _html_part(wait_for_mail(smtp, ADDRESS, 2).data)
            problems += _check_email(browser, "issue", issue_html)

            page.goto(server.url + "/archive")
            problems += _check_page(page, "archive")
            page.click("text=Lanterns Along the Canal")
            page.wait_for_selector("text=volunteers of the canal society")
            problems += _check_page(page, "archive-issue")
            # The archive copy leads back to the archive.
            page.click("text=All issues")
            page.wait_for_url(server.url + "/archive")

            unsubscribe = re.findall(r'href="([^"]*/unsubscribe/[^"]+)"', issue_html)[0]
            page.goto(unsubscribe.replace("&amp;", "&"))
            page.wait_for_selector("#unsubscribe")
            problems += _check_page(page, "unsubscribe")
            page.click("#unsubscribe")
            page.wait_for_selector("text=You are unsubscribed")
            problems += _check_page(page, "unsubscribed")
            context.close()
            browser.close()
    assert problems == []
