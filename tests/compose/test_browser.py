"""The composed issue in a real browser (headless Chromium) at 600px and 375px wide: no
horizontal scroll; title, byline, body and footer visible. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from weekly_mailer.articles import load_article
from weekly_mailer.compose import Recipient, compose_issue, unsubscribe_url
from weekly_mailer.config import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]
DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _html_for(article_path: Path, settings: Settings) -> str:
    issue = compose_issue(
        load_article(str(article_path)), settings, send_week=dt.date(2026, 11, 25)
    )
    who = Recipient(
        5, "reader@example.net", "Reader", unsubscribe_url(settings, 5, "reader@example.net")
    )
    from weekly_mailer.compose.message import Personal, fill, html_escape

    return fill(issue.html_template, Personal.of(who).body_values(), escape=html_escape)


@pytest.mark.parametrize("width", [600, 375])
@pytest.mark.parametrize("which", ["seed", "markdown"])
def test_issue_renders_without_horizontal_scroll(
    browser: Any, request: pytest.FixtureRequest, settings: Settings, width: int, which: str
) -> None:
    path = request.getfixturevalue("seed_path") if which == "seed" else DATA / "article.md"
    html = _html_for(path, settings)
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        # No network: the email must lay out without fetching anything.
        page.route("**/*", lambda route: route.abort())
        page.set_content(html, wait_until="load")
        overflow = page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth,"
            " document.body.scrollWidth]"
        )
        assert overflow[0] <= overflow[1] and overflow[2] <= overflow[1], overflow
        title = page.locator("h1.title")
        assert title.is_visible()
        assert title.inner_text() == load_article(str(path)).title
        assert page.locator("p.byline").is_visible()
        assert page.locator("p.byline").inner_text().startswith("By ")
        body = page.locator("div.content p").first
        assert body.is_visible() and len(body.inner_text()) > 40
        footer = page.locator("td.footer")
        assert footer.is_visible()
        assert "Unsubscribe" in footer.inner_text() and "View in browser" in footer.inner_text()
        assert (
            page.locator("a.unsubscribe")
            .get_attribute("href", timeout=1000)
            .startswith("https://news.example.org/unsubscribe/")
        )
        assert page.locator(".preheader").is_hidden()
        # The container fits the viewport at every width, at most 600px.
        box = page.locator("table.container").bounding_box()
        assert box is not None and box["width"] <= min(width, 600)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"compose-{which}-{width}.png"), full_page=True)
    finally:
        page.close()
