"""Optional DKIM signing (dkimpy) of each personalised message.

Enabled when ``dkim_domain``, ``dkim_selector`` and ``dkim_key_file`` are all set; the signature
covers From, To, Subject, Date, Message-ID, List-Unsubscribe and List-Unsubscribe-Post.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import dkim

from weekly_mailer.compose import DKIM_HEADERS
from weekly_mailer.errors import ConfigError

if TYPE_CHECKING:
    from weekly_mailer.config import Settings


class DkimSigner:
    """Signs serialised messages with one key (relaxed/relaxed canonicalisation)."""

    def __init__(self, *, domain: str, selector: str, private_key: bytes) -> None:
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        self.private_key = private_key

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """A signer when DKIM is configured, ``None`` when it is not; ``ConfigError`` if half-set
        or the key cannot be read."""
        values = (settings.dkim_domain, settings.dkim_selector, settings.dkim_key_file)
        if not any(values):
            return None
        if not all(values):
            raise ConfigError(
                "dkim_domain, dkim_selector and dkim_key_file must be set together (or none)"
            )
        try:
            key = Path(settings.dkim_key_file).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"dkim_key_file: cannot read {settings.dkim_key_file!r}: {exc.strerror}"
            ) from exc
        if b"PRIVATE KEY" not in key:
            raise ConfigError(f"dkim_key_file: {settings.dkim_key_file!r} is not a PEM private key")
        signer = cls(domain=settings.dkim_domain, selector=settings.dkim_selector, private_key=key)
        signer.sign(b"From: a@example.org\r\nSubject: key check\r\n\r\nx\r\n")  # fail early
        return signer

    def sign(self, message: bytes) -> bytes:
        """The message with a ``DKIM-Signature`` header in front; ``ConfigError`` when the key
        or the settings cannot sign (the worker stops the send rather than fail every row)."""
        try:
            signature = dkim.sign(
                message,
                self.selector,
                self.domain,
                self.private_key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=list(DKIM_HEADERS),
            )
        except dkim.DKIMException as exc:
            raise ConfigError(f"DKIM signing failed: {' '.join(str(exc).split())}") from exc
        except Exception as exc:  # noqa: BLE001 - dkimpy raises bare errors on bad keys
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"DKIM signing failed (check dkim_key_file): {reason}") from exc
        return bytes(signature) + message
