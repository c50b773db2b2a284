"""``/archive``, ``/archive/<issue>`` (the "view in browser" page), ``/feed.xml`` and ``/healthz``.

Only issues that went out (``sent``, or ``sending``) are shown. An issue page serves the stored
``archive_html``: the composed issue without anyone's personal data, under a CSP that allows its
inline styles and images but no script, form or frame.

``<issue>`` is the send week (``2026-11-25``, the canonical form, unique), the issue id, or the
slug (the newest issue with it).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from email.utils import format_datetime
from xml.etree import ElementTree as ET

from flask import Blueprint, Response, abort, jsonify, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from weekly_mailer.config import Settings
from weekly_mailer.issues.weeks import scheduled_send_at
from weekly_mailer.store.models import Issue, IssueStatus
from weekly_mailer.web import state
from weekly_mailer.web.security import ARCHIVE_CSP

log = logging.getLogger(__name__)
bp = Blueprint("archive", __name__)

PUBLISHED = (IssueStatus.SENT.value, IssueStatus.SENDING.value)
FEED_ITEMS = 50
_WEEK_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def issue_path(issue: Issue) -> str:
    """The canonical archive path of an issue."""
    return f"/archive/{issue.send_week.isoformat()}"


def sent_at(issue: Issue, settings: Settings) -> dt.datetime:
    """When the issue went out, for the archive list and the feed (not the article's date).

    The moment it was queued, else the scheduled send time of its send week (UTC).
    """
    if issue.enqueued_at is not None:
        return issue.enqueued_at.astimezone(dt.UTC)
    return scheduled_send_at(issue.send_week, settings).astimezone(dt.UTC)


def _published(session: Session, limit: int | None = None) -> list[Issue]:
    stmt = (
        select(Issue)
        .where(Issue.status.in_(PUBLISHED))
        .order_by(Issue.send_week.desc(), Issue.id.desc())
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def find_issue(session: Session, ident: str) -> Issue | None:
    """The published issue named by send week, id or slug."""
    stmt = select(Issue).where(Issue.status.in_(PUBLISHED))
    if _WEEK_RE.match(ident):
        try:
            week = dt.date.fromisoformat(ident)
        except ValueError:
            return None
        return session.scalars(stmt.where(Issue.send_week == week)).first()
    if ident.isdigit() and len(ident) < 12:
        return session.scalars(stmt.where(Issue.id == int(ident))).first()
    if len(ident) > 200:
        return None
    return session.scalars(stmt.where(Issue.slug == ident).order_by(Issue.send_week.desc())).first()


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
            for issue in _published(session)
        ]
    return render_template("archive.html", issues=issues)


@bp.get("/archive/<ident>")
def issue_page(ident: str) -> Response:
    web = state()
    with web.db.sessions.begin() as session:
        issue = find_issue(session, ident)
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
        issues = _published(session, FEED_ITEMS)
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
            ET.SubElement(channel, "lastBuildDate").text = format_datetime(newest)
        for issue in issues:
            item = ET.SubElement(channel, "item")
            link = web.url(issue_path(issue))
            ET.SubElement(item, "title").text = _title(issue)
            ET.SubElement(item, "link").text = link
            ET.SubElement(item, "guid", {"isPermaLink": "true"}).text = link
            ET.SubElement(item, "pubDate").text = format_datetime(sent_at(issue, settings))
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
        # A plain DBAPI round trip: no ORM transaction, so on SQLite no write lock is taken.
        raw = web.db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SELECT 1")
            ok = cursor.fetchone() == (1,)
            cursor.close()
        finally:
            raw.close()
        if not ok:
            raise RuntimeError("SELECT 1 did not answer 1")
    except Exception as exc:  # any database failure means "unhealthy"
        log.warning("health check failed: %s", exc)
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200
