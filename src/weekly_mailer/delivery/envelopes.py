"""The one place every outgoing message gets its envelope: the SMTP MAIL FROM (``bounce_address``,
else the From address; see ``compose.envelope_sender``) and, when configured, its DKIM signature.

With ``bounce_address`` set and ``verp`` on (the default), the MAIL FROM of each message names
its delivery, signed (``bounces+1234-k3j9x0a2pq@example.org``; ``tokens.VerpCodec``), so a
bounce that comes back is tied to that exact delivery whatever its body says.

Issue copies and confirmation e-mails both pass through :class:`Envelopes`, so neither can
forget the bounce address or the signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weekly_mailer.compose import envelope_sender, wire_clean
from weekly_mailer.delivery.backends.base import Envelope
from weekly_mailer.delivery.dkim import DkimSigner
from weekly_mailer.tokens import VerpCodec

if TYPE_CHECKING:
    from weekly_mailer.config import Settings


def verp_codec(settings: Settings) -> VerpCodec | None:
    """The VERP codec the settings call for: ``None`` without ``bounce_address``, with
    ``verp = false``, or without a ``secret_key`` to sign with."""
    if not settings.verp or not settings.bounce_address or not settings.secret_key:
        return None
    return VerpCodec(settings.secret_key, envelope_sender(settings))


class Envelopes:
    """Seals serialised messages for the backend: sender address, DKIM, recipient."""

    def __init__(
        self, *, sender: str, signer: DkimSigner | None, verp: VerpCodec | None = None
    ) -> None:
        self.sender = sender
        self.signer = signer
        self.verp = verp

    @classmethod
    def from_settings(cls, settings: Settings) -> Envelopes:
        """``ConfigError`` when DKIM is half-configured or its key cannot sign."""
        return cls(
            sender=envelope_sender(settings),
            signer=DkimSigner.from_settings(settings),
            verp=verp_codec(settings),
        )

    def sender_for(self, delivery_id: int | None) -> str:
        """The MAIL FROM of one delivery: its VERP address, or the bounce address."""
        if self.verp is None or delivery_id is None:
            return self.sender
        return self.verp.address(delivery_id)

    def seal(
        self,
        recipient: str,
        data: bytes,
        message_id: str,
        *,
        delivery_id: int | None = None,
        wire_safe: bool = False,
        ref: object = None,
    ) -> Envelope:
        """The message signed (if DKIM is on) in an envelope from the bounce address (its VERP
        form for ``delivery_id``). ``wire_safe``: ``data`` is in SMTP's wire form as it is
        (``Envelope.wire_safe``); so is the signed message when its signature headers are.
        ``ref``: the caller's handle (``Envelope.ref``)."""
        if self.signer is not None:
            signed = self.signer.sign(data)
            wire_safe = wire_safe and wire_clean(signed[: len(signed) - len(data)])
            data = signed
        sender = self.sender_for(delivery_id)
        return Envelope(sender, recipient, data, message_id, wire_safe, ref)
