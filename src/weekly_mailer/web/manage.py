"""The reader's own page: ``/manage`` ("Lost your link?"), ``/manage/<token>`` and
``/manage/move/<token>``.

GET and HEAD only ever show a page (link scanners fetch every URL in a message); a POST acts.
The page's forms carry the sign-up form's CSRF pair (a signed double-submit), on top of the
manage token in the URL. The move link (mailed to the new address) is a capability like a
confirm link: its GET shows a button, its POST makes the change. "Lost your link?" answers
every accepted request with the same page, held to the same time as a sign-up's answer, and
counts against the same per-IP limit, so nobody learns whether an address is a reader.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from flask import Blueprint, Response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from weekly_mailer.errors import SubscriberError, TokenError
from weekly_mailer.store.models import SubscriberStatus
from weekly_mailer.subscribers import forget, reader
from weekly_mailer.subscribers.confirmations import Queued, Request
from weekly_mailer.web.security import CSRF_FIELD, client_ip, error_page, invalid_link, network_key
from weekly_mailer.web.signup import EXPIRED, MAX_FIELD, NO_COOKIE, SIGNUP_ANSWER_SECONDS
from weekly_mailer.web.state import state

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.store.models import Subscriber

bp = Blueprint("manage", __name__)

# What the page says after each action (the POST redirects to the GET with ``?done=``).
DONE = {
    "renamed": "Your name was changed.",
    "move": "A link is on its way to the new address: the change is made when you open it.",
    "move-same": "That is your address already.",
    "move-taken": "That address cannot be used. Nothing was changed.",
    "move-limited": "You asked to change your address too often today. Try again tomorrow.",
    "paused": "Your subscription is paused.",
    "resumed": "Your subscription is running again.",
    "data": "A copy of your data is on its way to your address.",
    "data-limited": "A copy of your data was sent to you in the last day already.",
}


def _page(template: str, *, status: int = 200, **context: object) -> Response:
    response = Response(render_template(template, **context), status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _manage_page(token: str, *, done: str = "", error: str = "", status: int = 200) -> Response:
    web = state()
    with web.db.sessions.begin() as session:
        try:
            sub = reader.reader_for_token(session, web.signer, token)
        except TokenError:
            return invalid_link()
        shown = reader.view(session, sub, now=web.clock())
    return _page(
        "manage.html",
        status=status,
        reader=shown,
        subscribed=shown.status == SubscriberStatus.ACTIVE,
        done=DONE.get(done, ""),
        error=error,
        action=request.script_root + request.path,
        csrf_field=CSRF_FIELD,
        csrf_token=web.csrf.form_token(),
        max_issues=reader.MAX_PAUSE_ISSUES,
    )


@bp.get("/manage/<token>")
def page(token: str) -> Response:
    return _manage_page(token, done=request.args.get("done", "")[:20])


@bp.post("/manage/<token>")
def act(token: str) -> BaseResponse:
    web = state()
    if not web.csrf.valid():
        error = NO_COOKIE if web.csrf.cookie_missing() else EXPIRED
        return _manage_page(token, error=error, status=400)
    action = request.form.get("action", "")
    source = f"web:manage ip={client_ip()}"
    queued: Request | None = None
    try:
        with web.db.sessions.begin() as session:
            try:
                sub = reader.reader_for_token(session, web.signer, token, for_update=True)
            except TokenError:
                return invalid_link()
            now = web.clock()
            done = _apply(session, sub, action, source=source, now=now)
            if done == "forgotten":
                forget.erase(
                    session, sub, secret_key=web.settings.secret_key,
                    by="reader (web: forget me)", now=now,
                )  # fmt: skip
                return _page("forgotten.html")
            if done in ("move", "data"):
                queued = Request(Queued.QUEUED)
    except SubscriberError as exc:
        return _manage_page(token, error=str(exc), status=400)
    web.queued(queued)
    return redirect(url_for("manage.page", token=token, done=done), code=303)


def _apply(session: Session, sub: Subscriber, action: str, *, source: str, now: dt.datetime) -> str:
    """Do one action of the page; what to say after it (a key of :data:`DONE`)."""
    form = request.form
    if action == "rename":
        reader.rename(session, sub, form.get("name", "")[:MAX_FIELD], source=source, now=now)
        return "renamed"
    if action == "move":
        outcome = reader.request_move(
            session, sub, form.get("email", "")[:MAX_FIELD],
            per_day=state().settings.confirmations_per_address_per_day, source=source, now=now,
        )  # fmt: skip
        return "move" if outcome == reader.MoveOutcome.REQUESTED else f"move-{outcome.value}"
    if action == "pause":
        if form.get("until"):
            try:
                until = dt.date.fromisoformat(form.get("until", "")[:10])
            except ValueError as exc:
                raise SubscriberError("the date must look like 2027-01-31") from exc
            reader.pause(session, sub, until=until, source=source, now=now)
        else:
            try:
                issues = int(form.get("issues", "")[:3])
            except ValueError as exc:
                raise SubscriberError("say how many issues, or until when") from exc
            reader.pause(session, sub, issues=issues, source=source, now=now)
        return "paused"
    if action == "resume":
        reader.resume(session, sub, source=source, now=now)
        return "resumed"
    if action == "data":
        return (
            "data"
            if reader.request_data(session, sub, source=source, now=now)
            else ("data-limited")
        )
    if action == "forget":
        if form.get("sure") != "yes":
            raise SubscriberError("tick the box to confirm that everything should be erased")
        return "forgotten"
    raise SubscriberError("unknown action")


# -- the move link, mailed to the new address -------------------------------------------------


@bp.route("/manage/move/<token>", methods=["GET", "POST"])
def move(token: str) -> Response:
    web = state()
    max_age = dt.timedelta(days=web.settings.confirm_ttl_days)
    queued: Request | None = None
    with web.db.sessions.begin() as session:
        try:
            sub, change = reader.change_for_token(session, web.signer, token, max_age=max_age)
        except TokenError:
            return invalid_link()
        if request.method != "POST":  # GET and HEAD only ever show the page
            return _page(
                "move.html",
                new_address=change.new_email,
                already=change.confirmed_at is not None,
                action=request.script_root + request.path,
            )
        outcome = reader.confirm_move(
            session, sub, change, source=f"web:move ip={client_ip()}", now=web.clock()
        )
        if outcome == reader.ConfirmMove.TAKEN:
            return _page("move.html", new_address=change.new_email, taken=True)
        if outcome == reader.ConfirmMove.MOVED:
            queued = Request(Queued.QUEUED)
        manage = url_for("manage.page", token=reader.manage_token(web.signer, sub))
        new_address = sub.email
    web.queued(queued)
    return _page("moved.html", new_address=new_address, manage=manage)


# -- "Lost your link?" -----------------------------------------------------------------------


def _lost_form(*, email: str = "", error: str = "", status: int = 200) -> Response:
    web = state()
    return _page(
        "lost_link.html",
        status=status,
        csrf_field=CSRF_FIELD,
        csrf_token=web.csrf.form_token(),
        email=email,
        error=error,
    )


@bp.get("/manage")
def lost() -> Response:
    return _lost_form()


@bp.post("/manage")
def lost_post() -> Response:
    started = time.monotonic()
    response = _lost_post()
    # The same wait for every answer, as sign-up's: a reader's write must not show.
    left = SIGNUP_ANSWER_SECONDS - (time.monotonic() - started)
    if left > 0:
        time.sleep(left)
    return response


def _lost_post() -> Response:
    web = state()
    email = request.form.get("email", "")[:MAX_FIELD]
    if not web.csrf.valid():
        error = NO_COOKIE if web.csrf.cookie_missing() else EXPIRED
        return _lost_form(email=email, error=error, status=400)
    if not web.ip_limiter.hit(network_key(client_ip())):
        return error_page(429, text="Too many requests from your network. Please try later.")
    queued: Request | None = None
    with web.db.sessions.begin() as session:
        found = reader.request_link(
            session,
            email,
            per_day=web.settings.confirmations_per_address_per_day,
            source=f"web:lost-link ip={client_ip()}",
            now=web.clock(),
        )
        if found is not None:
            queued = Request(Queued.QUEUED, found)
    web.queued(queued)
    return _page("link_sent.html")
