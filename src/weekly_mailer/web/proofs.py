"""``GET|POST /proof/<token>``: an editor's approve or veto link, from their ``[Proof]``.

The token names the editor's copy of one proof and the decision (approve or veto: two purposes
of ``tokens``), bound to that proof's content. A GET only shows a page with a button (a link
scanner or a preview pane changes nothing); the POST records the decision, by the editor's
address (``via`` ``link``), exactly as ``issues approve|veto`` does. A tampered or foreign token
gets the plain invalid-link page; a link of a week sent or given up, or of a proof that a newer
one replaced (the content changed), says so and changes nothing.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, render_template, request

from weekly_mailer import proofs
from weekly_mailer.errors import ProofError, TokenError
from weekly_mailer.web.security import error_page, invalid_link
from weekly_mailer.web.state import state

bp = Blueprint("proofs", __name__)


def _page(template: str, **context: object) -> Response:
    response = Response(render_template(template, **context), mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/proof/<token>", methods=["GET", "POST"])
def decision(token: str) -> Response:
    web = state()
    with web.db.sessions.begin() as session:
        try:
            target = proofs.read_link(session, web.settings, token, now=web.clock())
        except TokenError:
            return invalid_link()
        except ProofError as exc:
            return error_page(410, title="This link no longer does anything", text=str(exc))
        vetoing = target.decision is proofs.Decision.VETO
        latest = proofs.latest_proof(session, target.proof.send_week)
        context = {
            "week": target.proof.send_week,
            "subject": target.proof.subject,
            "editor": target.copy.editor,
            "veto": vetoing,
            "outdated": latest is not None and latest.id != target.proof.id,
        }
        if request.method != "POST":  # GET and HEAD only ever show the page
            return _page(
                "proof.html", action=request.script_root + request.path, **context
            )
        reason = " ".join(request.form.get("reason", "").split())[:2000]
        if vetoing and not reason:
            reason = "no reason given (vetoed from the proof's link)"
        try:
            done = proofs.decide(
                session,
                decision=target.decision,
                by=target.copy.editor,
                reason=reason,
                via="link",
                now=web.clock(),
                proof=target.proof,
                grace=dt.timedelta(hours=web.settings.grace_hours),
            )
        except ProofError as exc:
            return error_page(409, title="Nothing was changed", text=str(exc))
        return _page("proof_done.html", at=done.at, reason=done.reason, **context)
