"""The delivery metrics, counted where the ledger is written (``results.write_outcomes`` and
the stale rows), once the transaction that wrote them commits: the counters agree with the
rows by construction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy.orm import Session

from weekly_mailer import metrics
from weekly_mailer.bounces.classify import classify
from weekly_mailer.bounces.refusals import outcome_class
from weekly_mailer.store.committed import after_commit
from weekly_mailer.store.models import DeliveryStatus
from weekly_mailer.store.outbox import Outcome, StaleRow

COUNTED = frozenset(
    {DeliveryStatus.SENT.value, DeliveryStatus.DEFERRED.value, DeliveryStatus.FAILED.value}
)


def bounce_class(outcome: Outcome) -> str:
    """What a failed or deferred attempt's reply means (the one classifier); ``none`` else.
    A failed row's class is the one its ``bounce_event`` row records (``refusals``)."""
    if outcome.status == DeliveryStatus.SENT.value:
        return "none"
    recorded = outcome_class(outcome)
    if recorded is not None:
        return recorded.kind.value
    return classify(code=outcome.code, text=outcome.error).kind.value


def count_outcomes(session: Session, outcomes: Sequence[Outcome]) -> None:
    """Count ``outcomes`` (not those handed back untried) when ``session`` commits."""
    messages: Counter[tuple[str, str, str]] = Counter()
    codes: list[int | None] = []
    for o in outcomes:
        if o.status in COUNTED:
            messages[(o.row.kind, o.status, bounce_class(o))] += 1
            codes.append(o.code)
    if messages:
        after_commit(session, lambda: _apply(messages, codes))


def count_stale(session: Session, rows: Sequence[StaleRow]) -> None:
    """Rows failed as stale (never sent within ``retry_give_up_hours``): failed, expired."""
    by_kind = Counter(r.kind for r in rows)
    if by_kind:
        after_commit(
            session,
            lambda: _apply(
                Counter(
                    {(k, DeliveryStatus.FAILED.value, "expired"): n for k, n in by_kind.items()}
                ),
                [],
            ),
        )


def _apply(messages: Counter[tuple[str, str, str]], codes: list[int | None]) -> None:
    for (kind, outcome, klass), n in messages.items():
        metrics.count_messages(kind, outcome, n, bounce_class=klass)
    for code in codes:
        metrics.count_reply(code)
