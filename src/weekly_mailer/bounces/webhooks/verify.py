"""Signature checks for the providers' webhooks. Each returns ``None`` when the event is
genuine, else the reason (for the log only: the response never says which part failed)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

MAILGUN_MAX_AGE = dt.timedelta(minutes=5)
# SNS retries an HTTP/S endpoint for at most 3,600 s (a hard limit of its delivery policies) and
# keeps the message's Timestamp (when it was published): older than this, it is no delivery.
SNS_MAX_AGE = dt.timedelta(hours=2)
# SendGrid retries a failed POST for 24 hours; whether its retries sign a new timestamp or the
# first one, three days is beyond any of them.
SENDGRID_MAX_AGE = dt.timedelta(days=3)
CLOCK_SKEW = dt.timedelta(minutes=5)  # a signed time this far ahead of ours is still believed
SNS_HOSTS_DEFAULT = ("sns.*.amazonaws.com",)

# The keys AWS signs, in the order it signs them (docs: "Verifying the signatures of Amazon
# SNS messages"). Each is written as "Key\nvalue\n": the newline after each value matters.
_SNS_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SNS_SUBSCRIPTION = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


def mailgun(
    signing_key: str, *, timestamp: str, token: str, signature: str, now: dt.datetime
) -> str | None:
    """Mailgun: HMAC-SHA256 of ``timestamp + token`` with the signing key, hex; the timestamp
    within 5 minutes of ``now``. (That the token was never accepted before is the caller's.)"""
    if not (signing_key and timestamp and token and signature):
        return "missing signature fields"
    try:
        at = dt.datetime.fromtimestamp(int(timestamp), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        return "bad timestamp"
    if abs(now - at) > MAILGUN_MAX_AGE:
        return _stale(at)
    mac = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256)
    if not hmac.compare_digest(mac.hexdigest(), signature.strip().lower()):
        return "signature does not match"
    return None


def postmark(credentials: str, authorization: str | None) -> str | None:
    """Postmark: HTTP basic auth equal to ``user:pass`` (compared in constant time)."""
    if not credentials:
        return "not configured"
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return "no basic auth"
    try:
        given = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "bad basic auth"
    if not hmac.compare_digest(given, credentials.encode()):
        return "wrong credentials"
    return None


def fresh(at: dt.datetime, now: dt.datetime, max_age: dt.timedelta) -> str | None:
    """``None`` when a signed time is within ``max_age`` before ``now`` (or ``CLOCK_SKEW``
    after it), else the reason."""
    if at < now - max_age or at > now + CLOCK_SKEW:
        return _stale(at)
    return None


def _stale(at: dt.datetime) -> str:
    return f"stale timestamp ({at:%Y-%m-%d %H:%M:%S} UTC)"


def sendgrid(
    public_key_b64: str, *, signature: str, timestamp: str, body: bytes, now: dt.datetime
) -> str | None:
    """SendGrid: ECDSA P-256 (SHA-256) signature, base64 DER, of ``timestamp + body`` against
    the verification key (base64 of the DER public key SendGrid shows); the timestamp within
    ``SENDGRID_MAX_AGE`` of ``now``."""
    if not (signature and timestamp):
        return "missing signature headers"
    try:
        at = dt.datetime.fromtimestamp(int(timestamp), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        return "bad timestamp"
    if stale := fresh(at, now, SENDGRID_MAX_AGE):
        return stale
    try:
        key = load_der_public_key(base64.b64decode(public_key_b64))
        sig = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error, TypeError):
        return "bad key or signature encoding"
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return "verification key is not an EC key"
    try:
        key.verify(sig, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "signature does not match"
    return None


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """Whether ``host`` matches one of ``patterns``, where ``*`` stands for exactly one label."""
    labels = host.lower().rstrip(".").split(".")
    for pattern in patterns:
        want = pattern.lower().rstrip(".").split(".")
        if len(want) == len(labels) and all(
            (w == "*" and re.fullmatch(r"[a-z0-9-]+", h) is not None) or w == h
            for w, h in zip(want, labels, strict=True)
        ):
            return True
    return False


def sns_url_allowed(url: str, patterns: Iterable[str]) -> bool:
    """An https URL on a host matching ``patterns``, nothing else: no user, and the default
    port unless the pattern names one (``host:port``, for a test's own server)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or parts.username or parts.password is not None:
        return False
    host = parts.hostname or ""
    for pattern in patterns:
        name, _, wanted = pattern.rpartition(":") if ":" in pattern else (pattern, "", "")
        ports = (int(wanted),) if wanted.isdigit() else (None, 443)
        if port in ports and host_matches(host, [name]):
            return True
    return False


def sns_canonical(message: Mapping[str, object]) -> bytes:
    """The string AWS signs: ``Key\\nvalue\\n`` for each signed key present, in order."""
    kind = message.get("Type")
    keys = _SNS_NOTIFICATION if kind == "Notification" else _SNS_SUBSCRIPTION
    out = []
    for key in keys:
        value = message.get(key)
        if value is None:
            if key == "Subject":  # optional, and then left out of the string
                continue
            raise ValueError(f"missing {key}")
        out.append(f"{key}\n{value}\n")
    return "".join(out).encode()


def sns(message: Mapping[str, object], certificate_pem: bytes, *, now: dt.datetime) -> str | None:
    """SNS: ``Signature`` (base64) of the canonical string, by the certificate's RSA key:
    ``SignatureVersion`` 1 is SHA1withRSA, 2 is SHA256withRSA; its ``Timestamp`` within
    ``SNS_MAX_AGE`` of ``now``."""
    version = str(message.get("SignatureVersion", ""))
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()  # noqa: S303 - what SNS signature version 1 is
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        return f"unknown SignatureVersion {version!r}"
    try:
        signed = sns_canonical(message)
        sig = base64.b64decode(str(message.get("Signature", "")), validate=True)
        cert = x509.load_pem_x509_certificate(certificate_pem)
    except (ValueError, binascii.Error) as exc:
        return f"unreadable message or certificate: {exc}"
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return "certificate key is not RSA"
    try:
        key.verify(sig, signed, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        return "signature does not match"
    try:
        at = dt.datetime.fromisoformat(str(message.get("Timestamp", "")))
    except ValueError:
        return "bad Timestamp"
    return fresh(at if at.tzinfo else at.replace(tzinfo=dt.UTC), now, SNS_MAX_AGE)
