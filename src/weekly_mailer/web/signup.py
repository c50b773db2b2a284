"""``GET /`` (the sign-up form) and ``POST /subscribe``.

Every accepted sign-up gets the same answer page, whether the address is new, pending, active or
unsubscribed, and whether or not an e-mail went out (no enumeration). The confirmation e-mail is
an outbox row committed in the same transaction as the pending subscriber; a worker sends it
after the answer, and a crash after the answer loses nothing. A filled-in honeypot field gets the
same page and changes nothing.

The work is not the same, though: a new address is a database write (a few ms more than an
active one). So every answer of ``POST /subscribe`` is held until :data:`SIGNUP_ANSWER_SECONDS`
after the request reached the view: timing tells nothing about who is subscribed.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, render_template, request
from sqlalchemy.exc import IntegrityError

from weekly_mailer.errors import SubscriberError
from weekly_mailer.subscribers import clean_name, normalise_address
from weekly_mailer.subscribers.confirmations import Request
from weekly_mailer.subscribers.signup import Door, sign_up
from weekly_mailer.web.security import CSRF_FIELD, client_ip, error_page, network_key
from weekly_mailer.web.state import state

log = logging.getLogger(__name__)
bp = Blueprint("signup", __name__)

HONEYPOT_FIELD = "website"
MAX_FIELD = 400
EXPIRED = "The form had expired. Please send it again."
NO_COOKIE = "Your browser did not send our cookie: please use the form on this page."
# Every sign-up answer takes at least this long from the request's start (a few times the
# slowest path, the new subscriber's write); see the module's docstring and docs/web.md.
SIGNUP_ANSWER_SECONDS = 0.05


def render_form(*, email: str = "", name: str = "", error: str = "", status: int = 200) -> Response:
    """The sign-up form with a fresh CSRF token (and the cookie that goes with it)."""
    body = render_template(
        "signup.html",
        csrf_field=CSRF_FIELD,
        csrf_token=state().csrf.form_token(),
        honeypot_field=HONEYPOT_FIELD,
        email=email,
        name=name,
        error=error,
    )
    return Response(body, status=status, mimetype="text/html")


def check_inbox() -> Response:
    """The one answer to every accepted sign-up."""
    per_day = state().settings.confirmations_per_address_per_day
    response = Response(render_template("check_inbox.html", per_day=per_day), mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
def form() -> Response:
    return render_form()


@bp.post("/subscribe")
def subscribe() -> Response:
    started = time.monotonic()
    response = _subscribe()
    # The same wait for every answer: a new address's write must not show in the timing.
    left = SIGNUP_ANSWER_SECONDS - (time.monotonic() - started)
    if left > 0:
        time.sleep(left)
    return response


def _subscribe() -> Response:
    web = state()
    email = request.form.get("email", "")[:MAX_FIELD]
    name = request.form.get("name", "")[:MAX_FIELD]
    if not web.csrf.valid():
        # No cookie at all: a form embedded on another site, or cookies off; "expired" would
        # make them send the same form forever. This page's form comes with a fresh cookie.
        error = NO_COOKIE if web.csrf.cookie_missing() else EXPIRED
        return render_form(email=email, name=name, error=error, status=400)
    ip = client_ip()
    if not web.ip_limiter.hit(network_key(ip)):
        log.info("sign-up refused: %s is over its hourly limit", ip)
        return error_page(429, text="Too many sign-ups from your network. Please try later.")
    if request.form.get(HONEYPOT_FIELD, ""):
        log.info("sign-up from %s ignored: the honeypot field was filled in", ip)
        return check_inbox()
    try:
        address, _key = normalise_address(email)
        clean = clean_name(name)
    except SubscriberError as exc:
        return render_form(email=email, name=name, error=str(exc), status=400)

    queued: Request | None = None
    now = web.clock()
    try:
        with web.db.sessions.begin() as session:
            web.expire_pending_if_due(session, now)
            # One service call, one transaction: the pending subscriber and its e-mail.
            queued = sign_up(
                session,
                address,
                door=Door.FORM,
                name=clean,
                per_day=web.settings.confirmations_per_address_per_day,
                detail=f"ip={ip}",
                now=now,
            ).confirmation
    except IntegrityError:
        # A simultaneous sign-up for the same new address won the race; it queued the e-mail.
        queued = None
    web.queued(queued)
    return check_inbox()
