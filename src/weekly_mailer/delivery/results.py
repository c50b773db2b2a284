"""Writing a batch of delivery results, and what they mean for the subscribers, in one
transaction: the outbox rows (``store.outbox.record``); delivered addresses clear their bounces
and hard bounces count (``subscribers.rules``); a confirmation e-mail that finally failed for
another reason than a 5xx refusal leaves the person's daily limit (``subscribers.confirmations``),
so they may ask again at once; every refusal is recorded with its class, and a burst of blocks
from one domain pauses it (``refusals.py``). Issue copies and confirmations are treated alike
otherwise."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from weekly_mailer.bounces.classify import Kind
from weekly_mailer.bounces.refusals import PauseRule as PauseRule
from weekly_mailer.bounces.refusals import classify_failure, record_refusals
from weekly_mailer.delivery.counting import count_outcomes, count_stale
from weekly_mailer.errors import NotABounce, PermanentFailure
from weekly_mailer.store import outbox
from weekly_mailer.store.models import DeliveryKind, DeliveryStatus
from weekly_mailer.store.outbox import Outcome, StaleRow
from weekly_mailer.subscribers import confirmations
from weekly_mailer.subscribers import rules as subs

if TYPE_CHECKING:
    from weekly_mailer.config import Settings


def counts_as_bounce(failure: PermanentFailure) -> bool:
    """Whether a refusal counts toward ``bounce_limit``: the classifier's rule, only ``hard``
    (no such mailbox or domain, moved; a bare ``550``/``551``/``553`` with no telling text is
    "mailbox unavailable", hard too). Blocks (spam, policy, reputation, authentication, rate
    limits), mailbox-full and unknown refusals never are, and neither is a backend's
    ``NotABounce`` (a 5xx after DATA: the recipient itself was accepted)."""
    return not isinstance(failure, NotABounce) and classify_failure(failure).kind is Kind.HARD


def not_a_refusal(outcome: Outcome) -> bool:
    """A failed confirmation the server did not refuse with a 5xx (it never went out)."""
    return (
        outcome.row.kind == DeliveryKind.CONFIRMATION.value
        and outcome.status == DeliveryStatus.FAILED.value
        and not 500 <= (outcome.code or 0) <= 599
    )


def write_outcomes(
    session: Session,
    outcomes: Sequence[Outcome],
    *,
    owner: str,
    bounce_limit: int,
    now: dt.datetime,
    bounces: Sequence[int] = (),
    pause: PauseRule | None = None,
) -> None:
    """Record ``outcomes`` and apply the subscriber rules they call for; ``bounces`` are
    subscribers refused earlier whose hard bounce the worker held back until now; ``pause``
    is the block-pause rule (``PauseRule.of(settings)``; its defaults when not given)."""
    if not outcomes and not bounces:
        return
    outcomes = outbox.record(session, outcomes, owner=owner, now=now)
    apply_effects(session, outcomes, bounces=bounces, now=now, bounce_limit=bounce_limit,
                  pause=pause)  # fmt: skip


def apply_effects(
    session: Session,
    outcomes: Sequence[Outcome],
    *,
    bounces: Sequence[int],
    now: dt.datetime,
    bounce_limit: int,
    pause: PauseRule | None = None,
) -> None:
    """What written results mean beyond their rows (see ``write_outcomes``)."""
    record_refusals(session, outcomes, now=now, rule=pause or PauseRule())
    count_outcomes(session, outcomes)
    sent = [o.row.subscriber_id for o in outcomes if o.status == DeliveryStatus.SENT.value]
    subs.note_delivered(session, sent)
    subs.note_bounce(
        session,
        [*bounces, *(o.row.subscriber_id for o in outcomes if o.bounce)],
        limit=bounce_limit,
        detail="hard bounce during delivery",
    )
    for o in outcomes:
        if not_a_refusal(o):
            confirmations.note_not_sent(session, [o.row.delivery_id], reason=o.error, now=now)


class ResultEffects:
    """The ``Effects`` the worker hands its outbox (``store.outbox.SqlOutbox``): the subscriber
    rules, refusals and metrics of written results, and what stale rows mean."""

    def __init__(self, settings: Settings) -> None:
        self.bounce_limit = settings.bounce_limit
        self.pause = PauseRule.of(settings)

    def recorded(
        self, session: Session, outcomes: Sequence[Outcome], *, bounces: Sequence[int],
        now: dt.datetime,
    ) -> None:  # fmt: skip
        apply_effects(session, outcomes, bounces=bounces, now=now,
                      bounce_limit=self.bounce_limit, pause=self.pause)  # fmt: skip

    def stale(self, session: Session, rows: Sequence[StaleRow], *, now: dt.datetime) -> None:
        note_stale(session, rows, now=now)


def note_stale(session: Session, rows: Sequence[StaleRow], *, now: dt.datetime) -> None:
    """Confirmation rows failed as stale never went out: out of the daily limit too."""
    count_stale(session, rows)
    confirmations.note_not_sent(
        session,
        [r.delivery_id for r in rows if r.kind == DeliveryKind.CONFIRMATION.value],
        reason="stale: not sent within retry_give_up_hours",
        now=now,
    )
