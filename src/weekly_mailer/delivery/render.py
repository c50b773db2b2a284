"""From a claimed outbox row to an ``Envelope``: the composer's cheap fill, then DKIM."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer.clock import utcnow
from weekly_mailer.compose import (
    Recipient,
    envelope_sender,
    make_message_id,
    personalise,
    unsubscribe_url,
)
from weekly_mailer.delivery.backends.base import Envelope
from weekly_mailer.delivery.dkim import DkimSigner
from weekly_mailer.errors import ComposeError
from weekly_mailer.store.models import Issue
from weekly_mailer.store.outbox import ClaimedRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings


class IssueRenderers:
    """Loads each issue's skeleton once and personalises it per row. See ``Renderers``.

    The Message-ID is keyed by the issue's send week and the subscriber, so a retry (or a resend
    after a crash) carries the same id.
    """

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
        self.signer = DkimSigner.from_settings(settings)
        self.sender = envelope_sender(settings)

    def for_issue(self, issue_id: int) -> Callable[[ClaimedRow], Envelope]:
        with self.sessions.begin() as session:
            issue = session.get(Issue, issue_id)
            if issue is None or not issue.skeleton:
                raise ComposeError(f"issue {issue_id} has no composed message")
            skeleton, week = issue.skeleton, issue.send_week
        settings, signer, sender, clock = self.settings, self.signer, self.sender, self.clock

        def render(row: ClaimedRow) -> Envelope:
            recipient = Recipient(
                row.subscriber_id,
                row.email,
                row.name,
                unsubscribe_url(settings, row.subscriber_id, row.email_key),
            )
            message_id = make_message_id(settings, week, row.subscriber_id)
            date = clock().replace(microsecond=0)
            data = personalise(skeleton, recipient, message_id=message_id, date=date)
            if signer is not None:
                data = signer.sign(data)
            return Envelope(sender, row.email, data, message_id)

        return render
