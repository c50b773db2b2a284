"""``issues approve`` and ``issues veto``: the editors' say over the week's send, and the proof
lines of ``issues list`` (see :mod:`weekly_mailer.proofs`)."""

from __future__ import annotations

import datetime as dt

import click

from weekly_mailer.cli._common import AppContext, pass_app

_WEEK = click.DateTime(formats=["%Y-%m-%d"])


def _week(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value is not None else None


@click.command()
@click.argument("week", required=False, metavar="[WEEK]", type=_WEEK)
@click.option("--by", "by", required=True, metavar="NAME", help="Who approves (recorded).")
@pass_app
def approve(app: AppContext, week: dt.datetime | None, by: str) -> None:
    """Approve WEEK's issue (YYYY-MM-DD; default: the next week to be sent) as its latest proof
    shows it.

    With approval = required the week goes out only once approved: at the send time, or at
    once when the send time has passed (within grace_hours). The approval holds for the content
    of that proof: if the article changes, a new [Proof] goes out and the week waits for a new
    approval. With approval = veto, an approval lifts an earlier veto.
    """
    from weekly_mailer import proofs

    now = app.clock()
    with app.db.sessions.begin() as session:
        done = proofs.decide(
            session, decision=proofs.Decision.APPROVE, by=by, week=_week(week), now=now,
            grace=dt.timedelta(hours=app.settings.grace_hours),
        )  # fmt: skip
        line = f"Approved the week of {done.send_week} (proof #{done.proof_id}) by {done.by}"
    click.echo(f"{line} at {now:%Y-%m-%d %H:%M:%S} UTC.")


@click.command()
@click.argument("week", required=False, metavar="[WEEK]", type=_WEEK)
@click.option("--by", "by", required=True, metavar="NAME", help="Who vetoes (recorded).")
@click.option("--reason", required=True, metavar="TEXT", help="Why (shown in `issues list`).")
@pass_app
def veto(app: AppContext, week: dt.datetime | None, by: str, reason: str) -> None:
    """Veto WEEK's issue (YYYY-MM-DD; default: the next week to be sent): it is not sent.

    A veto stands whatever the content (editing the article does not lift it); an approval
    given after it does. A week still vetoed at the end of grace_hours after its send time is
    recorded as missed, with who vetoed it and why.
    """
    from weekly_mailer import proofs

    now = app.clock()
    with app.db.sessions.begin() as session:
        done = proofs.decide(
            session, decision=proofs.Decision.VETO, by=by, reason=reason, week=_week(week),
            now=now, grace=dt.timedelta(hours=app.settings.grace_hours),
        )  # fmt: skip
        line = f"Vetoed the week of {done.send_week} by {done.by}: {done.reason}"
    click.echo(f"{line} (at {now:%Y-%m-%d %H:%M:%S} UTC). Nothing will be sent for it.")


def proof_lines(app: AppContext) -> list[str]:
    """One line per recent proofed week: its latest proof and where its approval stands."""
    from weekly_mailer import proofs

    with app.db.sessions.begin() as session:
        states = proofs.recent_weeks(session)
        lines = []
        for state, status in states:
            proof = state.proof
            assert proof is not None
            head = (
                f"PROOF week of {state.week}: proof #{proof.id} mailed "
                f"{proof.created_at:%Y-%m-%d %H:%M} UTC"
            )
            mode = app.settings.approval
            where = status or f"goes out {proof.fire_at:%Y-%m-%d %H:%M} UTC"
            if mode == "none" and state.state == "waiting":
                lines.append(f"{head}; {where}; no approval needed (approval = none)")
            else:
                lines.append(f"{head}; {where}; {state.line()}")
    return lines
