"""From a claimed outbox row to an ``Envelope``: the composer's cheap fill (an issue copy) or the
confirmation e-mail, then the envelope and DKIM (``envelopes.py``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer.clock import utcnow
from weekly_mailer.compose import (
    Recipient,
    build_confirmation_message,
    confirm_url,
    confirmation_message_id,
    make_message_id,
    manage_url,
    personalise_for_smtp,
    unsubscribe_url,
)
from weekly_mailer.delivery.backends.base import Envelope
from weekly_mailer.delivery.envelopes import Envelopes
from weekly_mailer.errors import ComposeError
from weekly_mailer.store.models import DeliveryKind, Issue
from weekly_mailer.store.outbox import ClaimedRow
from weekly_mailer.store.proof_models import proof_copy_for
from weekly_mailer.subscribers.reader_mail import ReaderMail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings


class IssueRenderers:
    """Renders both kinds of outbox rows. See ``Renderers``.

    An issue's skeleton is loaded once and personalised per row; its Message-ID is keyed by the
    send week and the subscriber. A confirmation is built per row with its confirm link; its
    Message-ID is keyed by the outbox row. Either way a retry (or a resend after a crash)
    carries the same id.
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
        self.envelopes = Envelopes.from_settings(settings)

    def for_issue(self, issue_id: int) -> Callable[[ClaimedRow], Envelope]:
        with self.sessions.begin() as session:
            issue = session.get(Issue, issue_id)
            if issue is None or not issue.skeleton:
                raise ComposeError(f"issue {issue_id} has no composed message")
            skeleton, week = issue.skeleton, issue.send_week
        settings, envelopes, clock = self.settings, self.envelopes, self.clock

        def render(row: ClaimedRow) -> Envelope:
            recipient = Recipient(
                row.subscriber_id,
                row.email,
                row.name,
                unsubscribe_url(settings, row.subscriber_id, row.email_key),
                manage_url(settings, row.subscriber_id, row.email_key),
            )
            message_id = make_message_id(settings, week, row.subscriber_id)
            date = clock().replace(microsecond=0)
            data, wire_safe = personalise_for_smtp(
                skeleton, recipient, message_id=message_id, date=date
            )
            return envelopes.seal(
                row.email, data, message_id, delivery_id=row.delivery_id, wire_safe=wire_safe,
                ref=row,
            )  # fmt: skip

        return render

    def for_confirmations(self) -> Callable[[ClaimedRow], Envelope]:
        settings, envelopes, clock = self.settings, self.envelopes, self.clock

        reader_mail = ReaderMail(self.sessions, settings, clock=clock)  # the reader's page's kinds

        def render(row: ClaimedRow) -> Envelope:
            if row.kind == DeliveryKind.PROOF.value:  # built when it was queued (proofs/)
                with self.sessions() as session:
                    copy = proof_copy_for(session, row.delivery_id)
                    if copy is None or not copy.message:
                        raise ComposeError(f"no proof for outbox row {row.delivery_id}")
                    to, data, message_id = copy.editor, copy.message, copy.message_id
                return envelopes.seal(to, data, message_id, delivery_id=row.delivery_id)
            if row.kind != DeliveryKind.CONFIRMATION.value:
                to, data, message_id = reader_mail.build(row)
                return envelopes.seal(to, data, message_id, delivery_id=row.delivery_id)
            message_id = confirmation_message_id(settings, row.delivery_id, row.subscriber_id)
            # The link is bound to the sign-up it is sent for, read with the claim.
            url = confirm_url(settings, row.subscriber_id, row.email_key, signup=row.signup)
            data = build_confirmation_message(
                settings,
                email=row.email,
                name=row.name,
                confirm_url=url,
                date=clock().replace(microsecond=0),
                message_id=message_id,
            )
            return envelopes.seal(
                row.email, data, message_id, delivery_id=row.delivery_id, ref=row
            )

        return render
