"""Which sign-up a confirm link is sent for: the value a confirm token is bound to.

``"<created_at>/<id of the last departure>"``: every time a subscriber leaves (an
``unsubscribed``, ``bounced`` or ``complained`` event) the value changes, so a confirm link
mailed before can never activate them again; the creation time tells an erased and re-created
subscriber (same id, same address) from the old one. ``""`` when the subscriber is gone.
Read here once for the subscriber rules (``subscribers.optin.signup_binding``) and for a
claim of confirmation rows (``outbox.claim``), so rendering a confirmation opens no session.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from weekly_mailer.store.models import EventKind, Subscriber, SubscriberEvent

LEFT = (EventKind.UNSUBSCRIBED.value, EventKind.BOUNCED.value, EventKind.COMPLAINED.value)


def signup_bindings(session: Session, subscriber_ids: Iterable[int]) -> dict[int, str]:
    """The binding of each subscriber (see the module); absent ids map to nothing."""
    ids = sorted(set(subscriber_ids))
    if not ids:
        return {}
    created: dict[int, dt.datetime] = {
        int(i): at
        for i, at in session.execute(
            select(Subscriber.id, Subscriber.created_at).where(Subscriber.id.in_(ids))
        )
    }
    left: dict[int, int] = {
        int(i): int(e)
        for i, e in session.execute(
            select(SubscriberEvent.subscriber_id, func.max(SubscriberEvent.id))
            .where(SubscriberEvent.subscriber_id.in_(ids), SubscriberEvent.kind.in_(LEFT))
            .group_by(SubscriberEvent.subscriber_id)
        )
    }
    return {
        int(i): f"{_utc(at).isoformat()}/{left.get(i) or 0}" for i, at in created.items()
    }


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
