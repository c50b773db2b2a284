"""Approval and veto: the editors' say over the week's send (``approval`` = none, veto,
required).

A decision names a week and the content of its latest proof (``content_hash``). The latest
decision that still applies is the week's state: a veto applies whatever the content (an edit
does not lift it; an approval of the new content does), an approval only while the content is
the one it was given for. So an article edited after its approval is not approved any more: the
proof job mails a new proof and the send waits for a new approval.

- ``required``: the week goes out only when its state is *approved* for the content composed at
  the send time; until then it waits, within ``grace_hours``, and is then recorded as missed
  with the reason.
- ``veto``: the week goes out unless its state is *vetoed*.
- ``none``: proofs inform; nothing waits.

Decisions come from ``issues approve|veto`` (``via`` ``cli``) and from the signed links of a
proof (``via`` ``link``; a POST acts, a GET only shows). Valid until the week is sent or given
up: a week with an issue row (sending, sent, skipped, missed) takes no decision.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import select

from weekly_mailer.errors import ProofError, TokenError
from weekly_mailer.issues.ledger import issue_for_week
from weekly_mailer.proofs.make import latest_proof
from weekly_mailer.store.proof_models import Decision, Proof, ProofCopy, ProofDecision
from weekly_mailer.tokens import Purpose, TokenSigner, signer_for

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.config import Settings


@dataclasses.dataclass(frozen=True, slots=True)
class WeekApproval:
    """Where a week stands: ``waiting``, ``approved`` or ``vetoed`` (``decision``: the one that
    decides it), for its latest ``proof``."""

    week: dt.date
    proof: Proof | None
    state: str
    decision: ProofDecision | None = None
    void: ProofDecision | None = None  # an approval of content that changed since

    def line(self) -> str:
        d = self.decision
        if self.state == "approved" and d is not None:
            return f"approved by {d.by} at {d.at:%Y-%m-%d %H:%M} UTC"
        if self.state == "vetoed" and d is not None:
            return f"vetoed by {d.by} at {d.at:%Y-%m-%d %H:%M} UTC: {d.reason or 'no reason given'}"
        if self.void is not None:
            return (
                f"waiting for approval (the approval by {self.void.by} was for content that "
                "changed since; a new proof went out)"
            )
        return "waiting for approval"


def week_approval(
    session: Session, week: dt.date, *, content_hash: str | None = None
) -> WeekApproval:
    """The state of ``week`` for ``content_hash`` (default: its latest proof's)."""
    proof = latest_proof(session, week)
    digest = content_hash or (proof.content_hash if proof is not None else "")
    decisions = list(
        session.scalars(
            select(ProofDecision)
            .where(ProofDecision.send_week == week)
            .order_by(ProofDecision.id.desc())  # the order they were recorded in
        )
    )
    void = None
    for d in decisions:
        if d.decision == Decision.VETO.value:
            return WeekApproval(week, proof, "vetoed", d)
        if d.content_hash == digest:
            return WeekApproval(week, proof, "approved", d)
        void = void or d
    return WeekApproval(week, proof, "waiting", void=void)


def gate(
    session: Session, settings: Settings, *, week: dt.date, content_hash: str
) -> str | None:
    """Why ``week`` may not go out now with this content (``None``: it may)."""
    if settings.approval == "none":
        return None
    state = week_approval(session, week, content_hash=content_hash)
    if state.state == "vetoed":
        return state.line()
    if settings.approval == "required" and state.state != "approved":
        return state.line() + " (approval = required)"
    return None


def next_week_to_send(session: Session, *, now: dt.datetime, grace: dt.timedelta) -> dt.date:
    """The week the next send is for: the earliest proofed week with no issue row yet whose
    send is not given up (its send time plus ``grace`` not passed)."""
    query = select(Proof.send_week, Proof.fire_at).order_by(Proof.send_week, Proof.id.desc())
    for week, fire_at in session.execute(query):
        if fire_at + grace >= now and issue_for_week(session, week) is None:
            return week
    raise ProofError("no proof is waiting for a decision (the next one goes out proof_hours "
                     "before the next send; see `weekly-mailer schedule`)")  # fmt: skip


def decide(
    session: Session,
    *,
    decision: Decision,
    by: str,
    now: dt.datetime,
    week: dt.date | None = None,
    reason: str = "",
    via: str = "cli",
    proof: Proof | None = None,
    grace: dt.timedelta = dt.timedelta(hours=12),
) -> ProofDecision:
    """Record an approval or a veto of ``week`` (default: the next week to send), bound to its
    latest proof's content (or to ``proof``'s, a link's: refused when that proof is not the
    latest). ``ProofError`` when there is nothing to decide: no proof, the week sent or recorded,
    or given up (its send time plus ``grace``, the ``grace_hours``, passed)."""
    by = " ".join(by.split())
    if not by:
        raise ProofError("--by: say who decides (a name)")
    if decision is Decision.VETO and not reason.strip():
        raise ProofError("--reason: say why the week is vetoed")
    if week is None:
        week = (
            proof.send_week
            if proof is not None
            else next_week_to_send(session, now=now, grace=grace)
        )
    issue = issue_for_week(session, week)
    if issue is not None:
        raise ProofError(
            f"the week of {week} is {issue.status} already: there is nothing to "
            f"{decision.value} any more"
        )
    latest = latest_proof(session, week)
    if latest is None:
        raise ProofError(f"the week of {week} has no proof yet: nothing to {decision.value}")
    if latest.fire_at + grace < now:
        raise ProofError(
            f"the week of {week} was given up: its send time and grace_hours passed; "
            f"there is nothing to {decision.value} any more"
        )
    if proof is not None and proof.id != latest.id:
        raise ProofError(
            "this proof is out of date: the issue changed and a newer proof was mailed; "
            "use the links of the newest one"
        )
    row = ProofDecision(
        send_week=week,
        proof_id=latest.id,
        content_hash=latest.content_hash,
        decision=decision.value,
        by=by[:200],
        reason=" ".join(reason.split())[:2000],
        via=via,
        at=now,
    )
    session.add(row)
    session.flush()
    return row


@dataclasses.dataclass(frozen=True, slots=True)
class LinkTarget:
    """What a proof's link names: the editor's copy, its proof, approve or veto."""

    copy: ProofCopy
    proof: Proof
    decision: Decision


def read_link(
    session: Session, settings: Settings, token: str, *, now: dt.datetime
) -> LinkTarget:
    """The copy and decision a proof link's token names; ``TokenError`` for a tampered or
    foreign token, ``ProofError`` when its week is sent or given up."""
    signer: TokenSigner = signer_for(settings.secret_key)
    for purpose, decision in ((Purpose.APPROVE, Decision.APPROVE), (Purpose.VETO, Decision.VETO)):
        try:
            copy_id, digest = signer.load(purpose, token)
        except TokenError:
            continue
        copy = session.get(ProofCopy, copy_id)
        proof = session.get(Proof, copy.proof_id) if copy is not None else None
        if copy is None or proof is None or not TokenSigner.matches(
            digest, copy.editor.lower(), bound_to=proof.content_hash
        ):
            raise TokenError("invalid link")
        issue = issue_for_week(session, proof.send_week)
        if issue is not None:
            raise ProofError(
                f"the week of {proof.send_week} is {issue.status} already: this link no "
                "longer does anything"
            )
        if proof.fire_at + dt.timedelta(hours=settings.grace_hours) < now:
            raise ProofError(
                f"the week of {proof.send_week} was given up: this link no longer does anything"
            )
        return LinkTarget(copy, proof, decision)
    raise TokenError("invalid link")


def recent_weeks(session: Session, *, limit: int = 4) -> list[tuple[WeekApproval, str]]:
    """The latest proofed weeks, newest first: their approval state and their issue's status
    (``""`` while the week has no issue row: it waits for its send)."""
    weeks = list(
        session.scalars(
            select(Proof.send_week).distinct().order_by(Proof.send_week.desc()).limit(limit)
        )
    )
    out = []
    for week in weeks:
        issue = issue_for_week(session, week)
        out.append((week_approval(session, week), issue.status if issue is not None else ""))
    return out
