"""Archive, issue page, RSS feed, health check, error pages and the serve command's wiring."""

from __future__ import annotations

import dataclasses
import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Issue, IssueStatus
from weekly_mailer.web import close_app, create_app

pytest_plugins = ["tests.support.web_fixtures"]


ARTICLE_DATE = dt.datetime(2007, 3, 9, 12, tzinfo=dt.UTC)


def _issue(week: str, status: IssueStatus, title: str, **extra: object) -> Issue:
    day = dt.date.fromisoformat(week)
    return Issue(
        send_week=day,
        status=status.value,
        title=title,
        subject=title,
        slug=title.lower().replace(" ", "-"),
        summary=f"About {title}.",
        published_at=ARTICLE_DATE,  # the article's own date, not when the issue went out
        archive_html=f"<!doctype html><html><body><h1>{title}</h1>"
        '<p style="color:#333">Body</p></body></html>',
        **extra,
    )


@pytest.fixture
def issues(database: Database) -> None:
    with database.sessions.begin() as session:
        subs.add(session, "reader@example.org", confirmed=True, source="cli")
        session.add_all(
            [
                _issue(
                    "2026-11-04",
                    IssueStatus.SENT,
                    "Rivers & Roads",
                    enqueued_at=dt.datetime(2026, 11, 4, 18, tzinfo=dt.UTC),
                ),
                _issue("2026-11-11", IssueStatus.SENDING, "Second <Issue>"),
                _issue("2026-11-18", IssueStatus.READY, "Not Yet Sent"),
                _issue("2026-11-25", IssueStatus.SKIPPED, "Skipped Week"),
            ]
        )


def test_archive_lists_only_sent_issues_newest_first(client: FlaskClient, issues: None) -> None:
    page = client.get("/archive").get_data(as_text=True)
    assert page.index("Second &lt;Issue&gt;") < page.index("Rivers &amp; Roads")
    assert 'href="/archive/2026-11-04"' in page and 'href="/archive/2026-11-11"' in page
    assert "Not Yet Sent" not in page and "Skipped Week" not in page
    assert "reader@example.org" not in page


def test_issue_page_serves_the_archive_copy_under_a_strict_policy(
    client: FlaskClient, issues: None, database: Database
) -> None:
    with database.sessions.begin() as session:
        issue_id = session.query(Issue.id).filter(Issue.title == "Rivers & Roads").scalar()
    for ident in ("2026-11-04", str(issue_id), "rivers-&-roads"):
        response = client.get(f"/archive/{ident}")
        assert response.status_code == 200, ident
        assert b"<h1>Rivers & Roads</h1>" in response.data
        csp = response.headers["Content-Security-Policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp and "form-action 'none'" in csp
        assert b"reader@example.org" not in response.data
    for missing in ("2026-11-18", "2026-11-25", "2026-13-45", "nope", "9" * 30):
        assert client.get(f"/archive/{missing}").status_code == 404, missing



@pytest.mark.parametrize("ident", ["²", "①", "1²", "١", "１", "٣٣"])
def test_non_ascii_digits_are_not_found_rather_than_a_server_error(
    client: FlaskClient, issues: None, ident: str
) -> None:
    """``str.isdigit`` accepts superscripts, circled and other scripts' digits; ids are ASCII."""
    response = client.get(f"/archive/{ident}")
    assert response.status_code == 404
    assert "Not found" in response.get_data(as_text=True)

def test_feed_is_rss_2_of_the_archive(
    client: FlaskClient, issues: None, web_settings: Settings
) -> None:
    response = client.get("/feed.xml")
    assert response.status_code == 200
    assert response.mimetype == "application/rss+xml"
    root = ET.fromstring(response.data)
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel is not None
    assert channel.findtext("title") == web_settings.list_name
    items = channel.findall("item")
    assert [i.findtext("title") for i in items] == ["Second <Issue>", "Rivers & Roads"]
    assert items[1].findtext("link") == "https://news.example.org/archive/2026-11-04"
    assert items[1].findtext("guid") == items[1].findtext("link")
    assert items[1].findtext("pubDate") == "Wed, 04 Nov 2026 10:00:00 -0800"
    assert items[1].findtext("description") == "About Rivers & Roads."


def test_feed_and_archive_dates_are_when_the_issue_was_sent(
    client: FlaskClient, issues: None
) -> None:
    page = client.get("/archive").get_data(as_text=True)
    assert "November 4, 2026" in page  # queued then
    assert "November 11, 2026" in page  # not queued: its scheduled send (wed 18:00 LA)
    assert "2007" not in page
    channel = ET.fromstring(client.get("/feed.xml").data).find("channel")
    assert channel is not None
    dates = [i.findtext("pubDate") for i in channel.findall("item")]
    # The list's zone, as on the page: the same day (not Thursday in UTC).
    assert dates == ["Wed, 11 Nov 2026 18:00:00 -0800", "Wed, 04 Nov 2026 10:00:00 -0800"]
    assert channel.findtext("lastBuildDate") == "Wed, 11 Nov 2026 18:00:00 -0800"


def test_feed_and_archive_when_nothing_was_sent(client: FlaskClient) -> None:
    assert "No issues have been sent yet" in client.get("/archive").get_data(as_text=True)
    root = ET.fromstring(client.get("/feed.xml").data)
    assert root.find("channel/item") is None


def test_healthz_checks_the_database(
    client: FlaskClient, settings: Settings, tmp_path: Path
) -> None:
    ok = client.get("/healthz")
    assert ok.status_code == 200 and ok.json == {"status": "ok", "database": "ok"}
    broken_settings = settings.replace(database_url=f"sqlite:///{tmp_path}")  # a folder
    broken_db = Database(broken_settings, check=False)
    app = create_app(broken_settings, db=broken_db, backend=MemoryBackend())
    try:
        bad = app.test_client().get("/healthz")
        assert bad.status_code == 503 and bad.json == {
            "status": "error",
            "database": "unreachable",
        }
    finally:
        close_app(app)
        broken_db.close()


def test_errors_are_plain_pages_with_the_security_headers(client: FlaskClient) -> None:
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and "Not found" in missing.get_data(as_text=True)
    assert "frame-ancestors 'none'" in missing.headers["Content-Security-Policy"]
    wrong = client.delete("/subscribe")
    assert wrong.status_code == 405
    assert client.get("/subscribe").status_code == 405
    css = client.get("/static/site.css")
    assert css.status_code == 200 and css.headers["X-Content-Type-Options"] == "nosniff"
    css.close()


def test_an_empty_secret_is_refused(settings: Settings, database: Database) -> None:
    from weekly_mailer.errors import TokenError

    with pytest.raises(TokenError, match="secret_key is empty"):
        create_app(
            dataclasses.replace(settings, secret_key=""),
            db=database,
            backend=MemoryBackend(),
        )


def test_templates_dir_overrides_a_page(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "mytemplates" / "web"
    folder.mkdir(parents=True)
    (folder / "archive.html").write_text(
        '{% extends "base.html" %}{% block content %}<h1>Our back issues</h1>{% endblock %}'
    )
    custom = dataclasses.replace(settings, templates_dir=str(tmp_path / "mytemplates"))
    app = create_app(custom, db=database, backend=MemoryBackend())
    try:
        page = app.test_client().get("/archive").get_data(as_text=True)
        assert "<h1>Our back issues</h1>" in page and settings.list_name in page
    finally:
        close_app(app)
