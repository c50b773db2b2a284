"""The links in e-mails: ``/confirm/<token>``, ``/unsubscribe/<token>``, ``/resubscribe/<token>``.

A GET only ever shows a page with a button, so link scanners and prefetchers change nothing; the
POST acts. ``POST /unsubscribe/<token>`` with the body ``List-Unsubscribe=One-Click`` (form-encoded
or multipart) is RFC 8058's one-click path: no CSRF token, no cookie, 200 and no redirect. Any
tampered, truncated, foreign or expired token gets the same plain 400 page; the pre-flight's
signed probe token (for no subscriber) gets a 200 that changes nothing, and so does a
``preview --send-test`` copy's token (a page saying it was a test copy; plain text to a
one-click POST).

Re-subscribing after unsubscribing sends a fresh confirmation e-mail rather than re-activating at
once: unsubscribe tokens never expire and travel with forwarded mail, so holding one is not proof
of consent; a confirmed double opt-in is, and it records a new consent time and source.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, render_template, request, url_for

from weekly_mailer.compose.links import is_probe_token, is_test_copy_token
from weekly_mailer.errors import TokenError
from weekly_mailer.store.models import Subscriber, SubscriberStatus
from weekly_mailer.subscribers import optin, reader
from weekly_mailer.subscribers.confirmations import Queued, Request
from weekly_mailer.tokens import Purpose
from weekly_mailer.web.security import client_ip, error_page, invalid_link, network_key
from weekly_mailer.web.state import state

bp = Blueprint("links", __name__)

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


def masked(address: str) -> str:
    """``a…@example.org``: enough for the owner to recognise, little for anyone else."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}…@{domain}" if domain else "…"


def _page(template: str, **context: object) -> Response:
    response = Response(render_template(template, **context), mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _manage_link(sub: Subscriber) -> str:
    """The reader's own page (pause instead of leaving, another address, their data)."""
    return url_for("manage.page", token=reader.manage_token(state().signer, sub))


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str) -> Response:
    web = state()
    max_age = dt.timedelta(days=web.settings.confirm_ttl_days)
    with web.db.sessions.begin() as session:
        try:
            sub = optin.subscriber_for_token(
                session,
                web.signer,
                Purpose.CONFIRM,
                token,
                max_age=max_age,
                for_update=request.method == "POST",
            )
        except TokenError:
            return invalid_link()
        if not optin.confirm_allowed(session, sub):
            return invalid_link()
        if request.method != "POST":  # GET and HEAD only ever show the page
            return _page(
                "confirm.html",
                address=masked(sub.email),
                already=sub.status == SubscriberStatus.ACTIVE,
                action=request.script_root + request.path,
            )
        outcome = optin.confirm_from_link(
            session, sub, source=f"web:confirm ip={client_ip()}", now=web.clock()
        )
        return _page(
            "confirmed.html",
            address=masked(sub.email),
            already=outcome == optin.ConfirmOutcome.ALREADY,
        )


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str) -> Response:
    web = state()
    with web.db.sessions.begin() as session:
        try:
            sub = optin.subscriber_for_token(
                session,
                web.signer,
                Purpose.UNSUBSCRIBE,
                token,
                for_update=request.method == "POST",
            )
        except TokenError:
            if is_probe_token(web.settings.secret_key, token):  # the pre-flight: changes nothing
                return Response("one-click probe: nothing changed\n", mimetype="text/plain")
            if is_test_copy_token(web.settings.secret_key, token):  # preview --send-test
                return _test_copy()
            return invalid_link()
        if request.method != "POST":  # GET and HEAD only ever show the page
            return _page(
                "unsubscribe.html",
                address=masked(sub.email),
                subscribed=sub.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING),
                action=request.script_root + request.path,
                manage=_manage_link(sub),
            )
        one_click = request.form.get(ONE_CLICK_FIELD, "") == ONE_CLICK_VALUE
        optin.unsubscribe_from_link(
            session,
            sub,
            source="web:one-click" if one_click else "web:unsubscribe",
            detail=f"ip={client_ip()}",
            now=web.clock(),
        )
        return _page(
            "unsubscribed.html",
            address=masked(sub.email),
            resubscribe=optin.may_resubscribe(sub),
            action=url_for("links.resubscribe", token=token),
            manage=_manage_link(sub),
        )


def _test_copy() -> Response:
    """A ``preview --send-test`` copy's link, opened or one-clicked: nobody is behind it, so
    nothing changes; a one-click POST gets a plain 200, a person a page saying so."""
    if request.method == "POST" and request.form.get(ONE_CLICK_FIELD, "") == ONE_CLICK_VALUE:
        return Response("test copy: nothing changed\n", mimetype="text/plain")
    return _page("test_copy.html")


@bp.post("/resubscribe/<token>")
def resubscribe(token: str) -> Response:
    web = state()
    ip = client_ip()
    queued: Request | None = None
    with web.db.sessions.begin() as session:
        try:
            sub = optin.subscriber_for_token(
                session, web.signer, Purpose.UNSUBSCRIBE, token, for_update=True
            )
        except TokenError:
            return invalid_link()
        if sub.status == SubscriberStatus.ACTIVE:
            return _page("confirmed.html", address=masked(sub.email), already=True)
        if not optin.may_resubscribe(sub):
            return invalid_link()
        if not web.ip_limiter.hit(network_key(ip)):
            return error_page(429)
        now = web.clock()
        queued = web.request_confirmation(
            session, sub, source="web:resubscribe", detail=f"ip={ip}", now=now
        )
        address = masked(sub.email)
    web.queued(queued)
    return _page("resubscribe.html", address=address, sent=queued.outcome != Queued.LIMITED)
