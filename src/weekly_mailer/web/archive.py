"""``/archive``, ``/archive/<issue>`` (the "view in browser" page), ``/feed.xml`` and ``/healthz``.

Only issues that went out (``sent``, or ``sending``) are shown. An issue page serves the stored
``archive_html``: the composed issue without anyone's personal data, under a CSP that allows its
inline styles and images but no script, form or frame.

``<issue>`` is the send week (``2026-11-25``, the canonical form, unique), the issue id, or the
slug (the newest issue with it).
"""

from __future__ import annotations

import logging
from email.utils import format_datetime
from xml.etree import ElementTree as ET

from flask import Blueprint, Response, abort, jsonify, render_template, request

from weekly_mailer.issues.archive import find_published, published, sent_at
from weekly_mailer.store.db import ping
from weekly_mailer.store.models import Issue
from weekly_mailer.web.security import ARCHIVE_CSP
from weekly_mailer.web.state import state

log = logging.getLogger(__name__)
bp = Blueprint("archive", __name__)

FEED_ITEMS = 50


def issue_path(issue: Issue) -> str:
    """The canonical archive path of an issue."""
    return f"/archive/{issue.send_week.isoformat()}"


def _title(issue: Issue) -> str:
    return issue.title or issue.subject or f"Issue of {issue.send_week.isoformat()}"


@bp.get("/archive")
def index() -> str:
    web = state()
    with web.db.sessions.begin() as session:
        issues = [
            {
                "title": _title(issue),
                "path": request.script_root + issue_path(issue),
                "date": sent_at(issue, web.settings).astimezone(web.settings.zone).date(),
                "summary": issue.summary,
            }
            for issue in published(session)
        ]
    return render_template("archive.html", issues=issues)


@bp.get("/archive/<ident>")
def issue_page(ident: str) -> Response:
    web = state()
    with web.db.sessions.begin() as session:
        issue = find_published(session, ident)
        if issue is None or not issue.archive_html:
            abort(404)
        html = issue.archive_html
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = ARCHIVE_CSP
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/feed.xml")
def feed() -> Response:
    web = state()
    settings = web.settings
    with web.db.sessions.begin() as session:
        issues = published(session, limit=FEED_ITEMS)
        rss = ET.Element("rss", {"version": "2.0", "xmlns:atom": "http://www.w3.org/2005/Atom"})
        channel = ET.SubElement(rss, "channel")
        ET.SubElement(channel, "title").text = settings.list_name
        ET.SubElement(channel, "link").text = web.url("/archive")
        ET.SubElement(channel, "description").text = f"Every issue of {settings.list_name}."
        ET.SubElement(
            channel,
            "atom:link",
            {"href": web.url("/feed.xml"), "rel": "self", "type": "application/rss+xml"},
        )
        if issues:
            newest = max(sent_at(i, settings) for i in issues)
            ET.SubElement(channel, "lastBuildDate").text = format_datetime(
                newest.astimezone(settings.zone)
            )
        for issue in issues:
            item = ET.SubElement(channel, "item")
            link = web.url(issue_path(issue))
            ET.SubElement(item, "title").text = _title(issue)
            ET.SubElement(item, "link").text = link
            ET.SubElement(item, "guid", {"isPermaLink": "true"}).text = link
            # In the list's zone, as the archive page dates it: the same day in both.
            when = sent_at(issue, settings).astimezone(settings.zone)
            ET.SubElement(item, "pubDate").text = format_datetime(when)
            if issue.summary:
                ET.SubElement(item, "description").text = issue.summary
    body = ET.tostring(rss, encoding="utf-8", xml_declaration=True)
    return Response(body, mimetype="application/rss+xml")


@bp.get("/favicon.ico")
def favicon() -> Response:
    """No icon, and no 404 in every browser's console either."""
    response = Response(status=204)
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    web = state()
    try:
        ping(web.db.engine)
    except Exception as exc:  # any database failure means "unhealthy"
        log.warning("health check failed: %s", exc)
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200
