"""Signed, purpose-bound tokens for confirm, unsubscribe, manage and move links, and VERP
envelope senders.

A token carries the subscriber id and a short digest of the subscriber's address, is signed
with ``secret_key`` (HMAC-SHA256 via itsdangerous, verified in constant time) and salted with its
purpose, so a confirm token can never unsubscribe anyone and vice versa. Confirm tokens expire;
unsubscribe tokens do not.

A token can also be bound to a value (``bound_to``) that goes into the digest with the address: a
confirm token is bound to the sign-up it was sent for (see ``subscribers.optin.signup_binding``),
so it dies when that value changes (the subscriber left), whatever happens later.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import time
import zlib
from enum import StrEnum

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from weekly_mailer.errors import TokenError


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    MANAGE = "manage"  # the reader's own page; never expires, dies when the address changes
    MOVE = "move"  # confirms a change of address, bound to the change; expires
    APPROVE = "approve"  # an editor's approval of a proof, bound to its content (proofs/)
    VETO = "veto"  # an editor's veto of a proof, bound to its content


def _address_digest(email_key: str, bound_to: str = "") -> str:
    # An address never holds a line break, so "key\nbinding" cannot collide with another key.
    text = f"{email_key}\n{bound_to}" if bound_to else email_key
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


class TokenSigner:
    """Makes and checks tokens for one secret key."""

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise TokenError("secret_key is empty: run `weekly-mailer init` or set one")
        # One serializer per purpose, built once: a send makes a token per recipient.
        self._serializers = {
            purpose: URLSafeTimedSerializer(
                secret_key,
                salt=f"weekly_mailer.{purpose.value}",
                signer_kwargs={"digest_method": hashlib.sha256},
            )
            for purpose in Purpose
        }
        # What ``dumps`` derives on every call (the salted key), derived once by itsdangerous's
        # own code: see ``make``.
        self._keys = {
            purpose: serializer.make_signer().derive_key()
            for purpose, serializer in self._serializers.items()
        }

    def _serializer(self, purpose: Purpose) -> URLSafeTimedSerializer:
        return self._serializers[purpose]

    def make(
        self, purpose: Purpose, subscriber_id: int, email_key: str, *, bound_to: str = ""
    ) -> str:
        """A URL-safe token for this subscriber and purpose (bound to ``bound_to``, if given)."""
        digest = _address_digest(email_key, bound_to)
        return self._dumps(purpose, int(subscriber_id), digest)

    def _dumps(self, purpose: Purpose, subscriber_id: int, digest: str) -> str:
        """Exactly ``URLSafeTimedSerializer.dumps([subscriber_id, digest])`` (itsdangerous 2.x:
        compact JSON, zlib only when shorter, URL-safe base64 without padding, the big-endian
        timestamp, HMAC-SHA256 under the key derived once in ``__init__``), without its
        per-call layers: a send makes one per recipient. ``load`` checks these with
        itsdangerous itself; tests/floor/test_tokens.py holds the two to the same bytes."""
        data = f'[{subscriber_id},"{digest}"]'.encode("ascii")  # digest: hex; compact JSON
        payload = _b64(data)
        if not _incompressible(data):  # itsdangerous keeps zlib's form when it is shorter
            compressed = zlib.compress(data)
            if len(compressed) < len(data) - 1:
                payload = b"." + _b64(compressed)
        stamp = int(time.time())
        value = payload + b"." + _b64(stamp.to_bytes(8, "big").lstrip(b"\x00"))
        signature = hmac.new(self._keys[purpose], value, hashlib.sha256).digest()
        return (value + b"." + _b64(signature)).decode("ascii")

    def load(
        self, purpose: Purpose, token: str, *, max_age: dt.timedelta | None = None
    ) -> tuple[int, str]:
        """The ``(subscriber_id, address digest)`` in a valid token; raises :class:`TokenError`."""
        if not token or len(token) > 512:
            raise TokenError("invalid link")
        try:
            data = self._serializer(purpose).loads(
                token, max_age=None if max_age is None else int(max_age.total_seconds())
            )
        except SignatureExpired as exc:
            raise TokenError("this link has expired") from exc
        except BadSignature as exc:
            raise TokenError("invalid link") from exc
        if (
            not isinstance(data, list)
            or len(data) != 2
            or not isinstance(data[0], int)
            or not isinstance(data[1], str)
        ):
            raise TokenError("invalid link")
        return data[0], data[1]

    @staticmethod
    def matches(digest: str, email_key: str, *, bound_to: str = "") -> bool:
        """Whether a token's address digest belongs to this address and binding (constant
        time)."""
        return hmac.compare_digest(digest, _address_digest(email_key, bound_to))


def _incompressible(data: bytes) -> bool:
    """Whether zlib certainly cannot shorten ``data`` (a short payload, ``make``'s): deflate
    matches repeat at least 3 bytes, so with no 3 bytes repeated it only has literals, and its
    6 bytes of header and checksum make the result longer. (Calling zlib costs more than the
    rest of a token: it sets up a 256 KiB compressor each time.)"""
    n = len(data)
    return n <= 64 and len({data[i : i + 3] for i in range(n - 2)}) == n - 2


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@functools.lru_cache(maxsize=4)
def signer_for(secret_key: str) -> TokenSigner:
    """The (shared, stateless) signer for a secret key."""
    return TokenSigner(secret_key)


# -- VERP: the envelope sender that names its delivery ----------------------------------------

VERP_MAC_LENGTH = 10  # base32 characters: 50 bits
_VERP_PURPOSE = b"weekly_mailer.verp"


class VerpCodec:
    """Builds and reads VERP envelope senders, ``<local>+<delivery id>-<mac>@<domain>``.

    ``mac`` is HMAC-SHA256 over the delivery id, truncated, under a key derived from
    ``secret_key`` for this purpose only (a confirm or unsubscribe token's signature never
    passes for one, and the reverse). Lower-case base32, so an MTA that folds the local part's
    case still hands back an address that verifies.
    """

    def __init__(self, secret_key: str, bounce_address: str) -> None:
        if not secret_key:
            raise TokenError("secret_key is empty: run `weekly-mailer init` or set one")
        local, _, domain = bounce_address.rpartition("@")
        if not local or not domain:
            raise TokenError(f"bounce_address {bounce_address!r} is not an address")
        self.local, self.domain = local, domain.lower()
        self._key = hmac.new(secret_key.encode("utf-8"), _VERP_PURPOSE, hashlib.sha256).digest()

    def mac(self, delivery_id: int) -> str:
        digest = hmac.new(self._key, str(delivery_id).encode("ascii"), hashlib.sha256).digest()
        return base64.b32encode(digest).decode("ascii")[:VERP_MAC_LENGTH].lower()

    def address(self, delivery_id: int) -> str:
        """The envelope sender for one delivery."""
        return f"{self.local}+{delivery_id}-{self.mac(delivery_id)}@{self.domain}"

    def read(self, address: str) -> tuple[int, bool] | None:
        """``(delivery id, genuine)`` when ``address`` has our VERP shape (``genuine``: its mac
        verifies, in constant time); ``None`` when it is not a VERP address of ours."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        if domain.lower() != self.domain or "+" not in local:
            return None
        base, _, tag = local.rpartition("+")
        number, _, mac = tag.partition("-")
        if base.lower() != self.local.lower() or not number.isdigit() or len(number) > 18:
            return None
        delivery_id = int(number)
        return delivery_id, hmac.compare_digest(mac.lower(), self.mac(delivery_id))
