"""Verified provider events applied through intake, each once.

Each event's id goes into ``webhook_event`` in the transaction that writes its ``bounce_event``
rows: a replay finds it there and changes nothing. Each finding is tied to the delivery it is
about, and only a delivery to the address it names:

1. a delivery a VERP address in the event names (its mac verifies), or the delivery of the
   issue and reader one of our Message-IDs in it names (its signature verifies);
2. else the latest delivery sent to that address in the last :data:`RECENT`: the provider's
   signed word that it refused mail of ours to that address (Postmark, for one, reports no
   header of the original).

A tied finding is applied as a genuine VERP report of its delivery (``about=``); one naming an
address we never sent to is recorded untrusted and changes nobody (``bounce_trust = "any"``
believes it, as it believes any report).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from weekly_mailer.bounces.intake import IngestSummary, apply_report, verp_reader
from weekly_mailer.bounces.report_reader import Finding, Report
from weekly_mailer.compose.links import read_message_id
from weekly_mailer.store.bounce_models import BounceKind, WebhookEvent
from weekly_mailer.store.models import Delivery, Issue, Subscriber

if TYPE_CHECKING:
    from weekly_mailer.bounces.webhooks.events import Event
    from weekly_mailer.config import Settings
    from weekly_mailer.tokens import VerpCodec

RECENT = dt.timedelta(days=45)


@dataclasses.dataclass
class Applied:
    """What one request did: events applied, events already applied (replays), findings tied
    to a delivery, findings tied to none (recorded untrusted)."""

    events: int = 0
    replayed: int = 0
    tied: int = 0
    untied: int = 0
    summary: IngestSummary = dataclasses.field(default_factory=IngestSummary)


def seen(session: Session, provider: str, event_id: str) -> bool:
    """Whether this provider's event was already applied."""
    return session.get(WebhookEvent, (provider, event_id)) is not None


def apply_events(
    session: Session,
    settings: Settings,
    provider: str,
    events: Sequence[Event],
    *,
    now: dt.datetime,
) -> Applied:
    """Apply each event not applied before, and record it in ``webhook_event``."""
    done = Applied()
    verp = verp_reader(settings)
    here: set[str] = set()  # the ids earlier in this request
    for event in events:
        if event.event_id in here or seen(session, provider, event.event_id):
            done.replayed += 1
            continue
        here.add(event.event_id)
        session.add(WebhookEvent(provider=provider, event_id=event.event_id, at=now))
        done.events += 1
        for n, finding in enumerate(event.findings):
            delivery = _tie(session, settings, verp, event, finding.recipient, now=now)
            done.tied += delivery is not None
            done.untied += delivery is None
            suffix = f"#{n}" if n else ""
            report = _report(finding, f"{provider}:{event.report_id or event.event_id}{suffix}")
            apply_report(
                session,
                report,
                bounce_limit=settings.bounce_limit,
                summary=done.summary,
                now=now,
                secret_key=settings.secret_key,
                about=delivery,
                trust=settings.bounce_trust,
            )
        session.flush()
    return done


def _report(finding: Finding, message_id: str) -> Report:
    kind = "feedback" if finding.kind in (BounceKind.COMPLAINT, BounceKind.OPT_OUT) else "bounce"
    if finding.kind is BounceKind.FEEDBACK:
        kind = "feedback"
    return Report(kind=kind, findings=[finding], message_id=message_id[:998])


def _tie(
    session: Session,
    settings: Settings,
    verp: VerpCodec | None,
    event: Event,
    recipient: str,
    *,
    now: dt.datetime,
) -> Delivery | None:
    """The delivery to ``recipient`` this event is about, or None (see the module)."""
    sub = session.scalar(select(Subscriber).where(Subscriber.email_key == recipient))
    if sub is None:
        return None
    for address in event.envelopes if verp is not None else ():
        assert verp is not None
        read = verp.read(address)
        if read is not None and read[1]:
            delivery = session.get(Delivery, read[0])
            if delivery is not None and delivery.subscriber_id == sub.id:
                return delivery
    for message_id in event.message_ids:
        parts = read_message_id(message_id, secret_key=settings.secret_key)
        if parts is None or parts[1] != sub.id:
            continue
        delivery = _issue_delivery(session, parts[0], sub.id)
        if delivery is not None:
            return delivery
    query = (
        select(Delivery)
        .where(Delivery.subscriber_id == sub.id, Delivery.sent_at >= now - RECENT)
        .order_by(Delivery.sent_at.desc(), Delivery.id.desc())
        .limit(1)
    )
    return session.scalar(query)


def _issue_delivery(session: Session, key: str, subscriber_id: int) -> Delivery | None:
    """The delivery of the issue a Message-ID's key names (a send week or an id) to a reader."""
    try:
        week = dt.date.fromisoformat(key)
    except ValueError:
        issue_id = int(key) if key.isdigit() else None
    else:
        issue_id = session.scalar(select(Issue.id).where(Issue.send_week == week))
    if issue_id is None:
        return None
    query = select(Delivery).where(
        Delivery.issue_id == issue_id, Delivery.subscriber_id == subscriber_id
    )
    return session.scalar(query)
