"""``POST /webhooks/<provider>``: the providers' bounce and complaint events (``ses`` through
Amazon SNS, ``mailgun``, ``postmark``, ``sendgrid``). Each is off (404) until its key is set.

This edge reads the request, asks :mod:`weekly_mailer.bounces.webhooks` to verify it and, in
one transaction, to apply it, and answers: 200 applied, 403 refused (forged, stale, replayed,
unknown topic or certificate host: the answer never says which), 400 a genuine request of a
shape we cannot read, 503 an SNS certificate or SubscribeURL out of reach (SNS retries).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from sqlalchemy.exc import IntegrityError

from weekly_mailer.bounces.webhooks.service import Request, Verdict, Webhooks
from weekly_mailer.web.security import client_ip, error_page
from weekly_mailer.web.state import state

bp = Blueprint("webhooks", __name__)

# SendGrid posts batches of up to 768 KB and SNS messages reach 256 KB: more than the forms'
# max_request_bytes, so these routes allow at least this much.
MAX_WEBHOOK_BYTES = 1024 * 1024

_ANSWERS = {
    Verdict.ACCEPTED: (200, "ok\n"),
    Verdict.REFUSED: (403, "refused\n"),
    Verdict.MALFORMED: (400, "bad request\n"),
    Verdict.UNAVAILABLE: (503, "try again later\n"),
}


def hooks() -> Webhooks:
    """The app's webhooks service (made on first use: it keeps the SNS certificate cache)."""
    found = current_app.extensions.get("weekly_mailer_webhooks")
    if found is None:
        found = current_app.extensions.setdefault(
            "weekly_mailer_webhooks", Webhooks(state().settings)
        )
    assert isinstance(found, Webhooks)
    return found


@bp.before_request
def _allow_larger_bodies() -> None:
    request.max_content_length = max(MAX_WEBHOOK_BYTES, state().settings.max_request_bytes)


@bp.route("/webhooks/<provider>", methods=["POST"])
def receive(provider: str) -> Response:
    web, service = state(), hooks()
    if not service.enabled(provider):
        return error_page(404)
    now = web.clock()
    headers = {k.lower(): v for k, v in request.headers.items()}
    incoming = Request(request.get_data(cache=False), headers, client_ip())
    checked = service.check(provider, incoming, now=now)
    if checked.verdict is Verdict.ACCEPTED and checked.events:
        try:
            with web.db.sessions.begin() as session:
                checked = service.apply(session, checked, now=now)
        except IntegrityError:  # the same event in a request running beside this one
            checked.verdict = Verdict.REFUSED
    code, text = _ANSWERS.get(checked.verdict, (404, ""))
    if code == 404:
        return error_page(404)
    response = Response(text, status=code, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    return response
