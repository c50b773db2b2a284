"""Building the reader's own mail when a worker claims its outbox row (``delivery.render``
dispatches the kinds that are neither an issue copy nor a confirmation here).

Each message is built from the database as it is at send time: the manage link of the reader's
current address; a move's confirmation link, to the new address of the change that row was
queued for; the notice, to the old address of that change; the data copy, the reader's record,
events and address changes as a JSON attachment (never shown on a page). A retry carries the
same Message-ID (keyed by the outbox row).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from weekly_mailer.clock import utcnow
from weekly_mailer.compose.links import make_message_id, manage_url
from weekly_mailer.compose.reader_mail import Attachment, build_reader_message
from weekly_mailer.errors import ComposeError
from weekly_mailer.store.models import DeliveryKind, Subscriber, SubscriberEvent
from weekly_mailer.store.reader_models import AddressChange
from weekly_mailer.subscribers.reader import move_token
from weekly_mailer.tokens import signer_for

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings
    from weekly_mailer.store.outbox import ClaimedRow


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def data_copy(session: Session, sub: Subscriber) -> dict[str, Any]:
    """Everything the list holds about one reader (the JSON of "Email me my data")."""
    events = session.scalars(
        select(SubscriberEvent)
        .where(SubscriberEvent.subscriber_id == sub.id)
        .order_by(SubscriberEvent.id)
    )
    changes = session.scalars(
        select(AddressChange)
        .where(AddressChange.subscriber_id == sub.id)
        .order_by(AddressChange.id)
    )
    return {
        "subscriber": {
            "email": sub.email,
            "name": sub.name,
            "status": sub.status,
            "created_at": _iso(sub.created_at),
            "confirmed_at": _iso(sub.confirmed_at),
            "unsubscribed_at": _iso(sub.unsubscribed_at),
            "consent_at": _iso(sub.consent_at),
            "consent_source": sub.consent_source,
            "source": sub.source,
            "bounce_count": sub.bounce_count,
            "paused_issues": sub.paused_issues,
            "paused_until": _iso(sub.paused_until),
        },
        "events": [
            {"kind": e.kind, "at": _iso(e.at), "source": e.source, "detail": e.detail}
            for e in events
        ],
        "address_changes": [
            {
                "from": c.old_email,
                "to": c.new_email,
                "requested_at": _iso(c.requested_at),
                "confirmed_at": _iso(c.confirmed_at),
            }
            for c in changes
        ],
    }


class ReaderMail:
    """Builds the reader's mail for claimed rows: ``build(row)`` → ``(to, bytes, message_id)``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock

    def build(self, row: ClaimedRow) -> tuple[str, bytes, str]:
        settings = self.settings
        message_id = make_message_id(settings, f"reader-{row.delivery_id}", row.subscriber_id)
        with self.sessions() as session:
            sub = session.get(Subscriber, row.subscriber_id)
            if sub is None:
                raise ComposeError("the reader is gone")
            to, subject, text, attachment = self._content(session, sub, row)
        return to, build_reader_message(
            settings, to=to, subject=subject, text=text, attachment=attachment,
            date=self.clock().replace(microsecond=0), message_id=message_id,
        ), message_id  # fmt: skip

    def _content(
        self, session: Session, sub: Subscriber, row: ClaimedRow
    ) -> tuple[str, str, str, Attachment | None]:
        settings = self.settings
        base = settings.base_url.rstrip("/")
        page = manage_url(settings, sub.id, sub.email_key)
        if row.kind == DeliveryKind.MANAGE_LINK.value:
            return (
                sub.email,
                "Your subscription page",
                (
                    f"Someone (we hope you) asked for the link to your {settings.list_name}\n"
                    "subscription page. There you can change your name or address, pause,\n"
                    "get a copy of your data, or leave:\n\n"
                    f"{page}\n\n"
                    "If it was not you, there is nothing to do: the link is only in this e-mail.\n"
                ),
                None,
            )
        if row.kind == DeliveryKind.DATA_COPY.value:
            data = json.dumps(data_copy(session, sub), indent=2, ensure_ascii=False)
            return (
                sub.email,
                "Your data",
                (
                    f"Attached (my-data.json) is everything {settings.list_name} holds about\n"
                    "this address: your record, its history and any change of address.\n\n"
                    f"Your subscription page: {page}\n"
                ),
                Attachment("my-data.json", data.encode("utf-8")),
            )
        change = session.scalars(
            select(AddressChange).where(
                AddressChange.subscriber_id == sub.id,
                or_(
                    AddressChange.confirm_delivery_id == row.delivery_id,
                    AddressChange.notice_delivery_id == row.delivery_id,
                ),
            )
        ).first()
        if change is None:
            raise ComposeError(f"no address change for outbox row {row.delivery_id}")
        if row.kind == DeliveryKind.MOVE_CONFIRM.value:
            token = move_token(signer_for(settings.secret_key), sub, change)
            return (
                change.new_email,
                "Confirm your new address",
                (
                    f"The {settings.list_name} reader at {change.old_email} asked to receive it\n"
                    "at this address from now on. To confirm, open this link and press the\n"
                    "button:\n\n"
                    f"{base}/manage/move/{token}\n\n"
                    "If you did not ask for this, ignore this e-mail: nothing changes.\n"
                ),
                None,
            )
        if row.kind == DeliveryKind.MOVE_NOTICE.value:
            return (
                change.old_email,
                "Your address was changed",
                (
                    f"{settings.list_name} now goes to {change.new_email} instead of this\n"
                    "address, as confirmed at the new address. Nothing more will be sent here.\n\n"
                    "If you did not ask for this, reply to this e-mail.\n"
                ),
                None,
            )
        raise ComposeError(f"no reader mail of kind {row.kind!r}")
