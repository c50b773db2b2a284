"""Confirmation e-mails sent from the command line (the web sends its own from a queue).

A subscriber added without ``--confirmed`` is pending: they get the double opt-in e-mail and
become active only when they press the button behind its link. The daily limit per address
(``confirmations_per_address_per_day``) applies here as on the web.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from email.parser import BytesHeaderParser
from typing import TYPE_CHECKING

from weekly_mailer.compose import build_confirmation_message, envelope_sender
from weekly_mailer.delivery.backends.base import BackendUnavailableError, Envelope
from weekly_mailer.errors import DeliveryError, WeeklyMailerError
from weekly_mailer.subscribers.optin import may_send_confirmation, note_confirmation_sent
from weekly_mailer.tokens import Purpose, signer_for

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend
    from weekly_mailer.store.models import Subscriber


def confirm_url(settings: Settings, sub: Subscriber) -> str:
    """``{base_url}/confirm/{token}``: a signed, purpose-bound token that expires."""
    token = signer_for(settings.secret_key).make(Purpose.CONFIRM, sub.id, sub.email_key)
    return f"{settings.base_url.rstrip('/')}/confirm/{token}"


@dataclasses.dataclass
class ConfirmationSummary:
    sent: int = 0
    limited: int = 0
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def send_confirmations(
    session: Session,
    settings: Settings,
    backend: Backend,
    subscribers: Iterable[Subscriber],
    *,
    source: str,
    now: dt.datetime,
) -> ConfirmationSummary:
    """E-mail the confirmation link to each pending subscriber, within the daily limit.

    Only a message the backend accepted counts towards the limit; a failure for one address is
    reported, not raised, so it does not stop the others. A backend that is down raises
    ``BackendUnavailableError`` at once; what was sent before stays recorded.
    """
    summary = ConfirmationSummary()
    sender = envelope_sender(settings)
    for sub in subscribers:
        if not may_send_confirmation(
            session, sub, per_day=settings.confirmations_per_address_per_day, now=now
        ):
            summary.limited += 1
            continue
        try:
            data = build_confirmation_message(
                settings, email=sub.email, name=sub.name, confirm_url=confirm_url(settings, sub)
            )
            message_id = str(BytesHeaderParser().parsebytes(data).get("Message-ID", "")).strip()
            backend.send(Envelope(sender, sub.email, data, message_id))
        except BackendUnavailableError:
            raise  # the server is down: stop here instead of timing out once per address
        except (DeliveryError, WeeklyMailerError) as exc:
            summary.failed.append((sub.email, str(exc)))
            continue
        note_confirmation_sent(session, sub, source=source, now=now)
        summary.sent += 1
    return summary
