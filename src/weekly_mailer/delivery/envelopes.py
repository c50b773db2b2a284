"""The one place every outgoing message gets its envelope: the SMTP MAIL FROM (``bounce_address``,
else the From address; see ``compose.envelope_sender``) and, when configured, its DKIM signature.

Issue copies and confirmation e-mails both pass through :class:`Envelopes`, so neither can
forget the bounce address or the signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weekly_mailer.compose import envelope_sender
from weekly_mailer.delivery.backends.base import Envelope
from weekly_mailer.delivery.dkim import DkimSigner

if TYPE_CHECKING:
    from weekly_mailer.config import Settings


class Envelopes:
    """Seals serialised messages for the backend: sender address, DKIM, recipient."""

    def __init__(self, *, sender: str, signer: DkimSigner | None) -> None:
        self.sender = sender
        self.signer = signer

    @classmethod
    def from_settings(cls, settings: Settings) -> Envelopes:
        """``ConfigError`` when DKIM is half-configured or its key cannot sign."""
        return cls(sender=envelope_sender(settings), signer=DkimSigner.from_settings(settings))

    def seal(
        self, recipient: str, data: bytes, message_id: str, *, delivery_id: int | None = None
    ) -> Envelope:
        """The message signed (if DKIM is on) in an envelope from the bounce address.

        ``delivery_id`` is the outbox row the message is for (not used yet: a per-delivery
        envelope sender will be keyed by it)."""
        if self.signer is not None:
            data = self.signer.sign(data)
        return Envelope(self.sender, recipient, data, message_id)
