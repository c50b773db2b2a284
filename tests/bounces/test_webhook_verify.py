"""The providers' signature checks: genuine events pass; tampered, stale, wrongly keyed or
wrongly hosted ones are refused."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from weekly_mailer.bounces.webhooks import verify

NOW = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)


def _mailgun_sig(key: str, ts: str, token: str) -> str:
    return hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()


def test_mailgun_genuine_tampered_stale() -> None:
    ts = str(int(NOW.timestamp()) - 60)
    sig = _mailgun_sig("k3y", ts, "tok")
    assert verify.mailgun("k3y", timestamp=ts, token="tok", signature=sig, now=NOW) is None
    assert verify.mailgun("k3y", timestamp=ts, token="tok2", signature=sig, now=NOW)
    assert verify.mailgun("other", timestamp=ts, token="tok", signature=sig, now=NOW)
    old = str(int(NOW.timestamp()) - 301)
    stale = _mailgun_sig("k3y", old, "tok")
    assert "stale" in str(
        verify.mailgun("k3y", timestamp=old, token="tok", signature=stale, now=NOW)
    )
    assert verify.mailgun("k3y", timestamp="x", token="tok", signature=sig, now=NOW)
    assert verify.mailgun("k3y", timestamp=ts, token="tok", signature="", now=NOW)


def test_postmark_basic_auth() -> None:
    good = "Basic " + base64.b64encode(b"hook:s3cret").decode()
    bad = "Basic " + base64.b64encode(b"hook:s3creT").decode()
    assert verify.postmark("hook:s3cret", good) is None
    assert verify.postmark("hook:s3cret", bad)
    assert verify.postmark("hook:s3cret", None)
    assert verify.postmark("hook:s3cret", "Basic !!!")
    assert verify.postmark("hook:s3cret", "Bearer " + good[6:])


def test_sendgrid_ecdsa() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = base64.b64encode(der).decode()
    body = b'[{"event":"bounce"}]'

    def signed(at: dt.datetime) -> tuple[str, str]:
        ts = str(int(at.timestamp()))
        sig = private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return ts, base64.b64encode(sig).decode()

    ts, sig = signed(NOW - dt.timedelta(hours=1))
    assert verify.sendgrid(key, signature=sig, timestamp=ts, body=body, now=NOW) is None
    assert verify.sendgrid(key, signature=sig, timestamp=ts, body=body + b" ", now=NOW)
    other_ts = str(int(ts) + 1)
    assert verify.sendgrid(key, signature=sig, timestamp=other_ts, body=body, now=NOW)
    assert verify.sendgrid(key, signature="", timestamp=ts, body=body, now=NOW)
    assert verify.sendgrid("bm90IGEga2V5", signature=sig, timestamp=ts, body=body, now=NOW)
    assert verify.sendgrid(key, signature=sig, timestamp="x", body=body, now=NOW)
    # Genuine but stale (older than SendGrid's retries) or from the future: refused.
    for at in (NOW - dt.timedelta(days=3, seconds=1), NOW + dt.timedelta(minutes=6)):
        ts, sig = signed(at)
        failed = verify.sendgrid(key, signature=sig, timestamp=ts, body=body, now=NOW)
        assert failed is not None and failed.startswith("stale timestamp"), failed
    ts, sig = signed(NOW - dt.timedelta(days=2, hours=23))  # a retry a day and more later
    assert verify.sendgrid(key, signature=sig, timestamp=ts, body=body, now=NOW) is None


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://sns.us-east-1.amazonaws.com/cert.pem", True),
        ("http://sns.us-east-1.amazonaws.com/cert.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.org/cert.pem", False),
        ("https://sns.a.b.amazonaws.com/cert.pem", False),
        ("https://evil.org/sns.us-east-1.amazonaws.com/cert.pem", False),
        ("https://x@sns.us-east-1.amazonaws.com/cert.pem", False),
        ("https://sns.us-east-1.amazonaws.com:8443/cert.pem", False),
    ],
)
def test_sns_certificate_host(url: str, ok: bool) -> None:
    assert verify.sns_url_allowed(url, verify.SNS_HOSTS_DEFAULT) is ok


def _signed(ca: trustme.CA, version: str, **fields: str) -> tuple[dict[str, str], bytes]:
    leaf = ca.issue_cert("sns.us-east-1.amazonaws.com", key_type=trustme.KeyType.RSA)
    cert_pem = leaf.cert_chain_pems[0].bytes()
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    message = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-bounces",
        "Message": '{"notificationType":"Bounce"}',
        "Timestamp": "2026-12-07T08:00:00.000Z",
        "SignatureVersion": version,
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        **fields,
    }
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
    assert isinstance(key, rsa.RSAPrivateKey)
    sig = key.sign(verify.sns_canonical(message), padding.PKCS1v15(), algorithm)
    message["Signature"] = base64.b64encode(sig).decode()
    return message, cert_pem


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_signature_versions(version: str) -> None:
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    message, cert = _signed(ca, version, Subject="Amazon SES Email Event")
    assert verify.sns(message, cert, now=NOW) is None
    assert verify.sns(message, cert, now=NOW + dt.timedelta(hours=1, minutes=59)) is None
    assert verify.sns({**message, "Message": message["Message"] + " "}, cert, now=NOW)
    assert verify.sns({**message, "SignatureVersion": "3"}, cert, now=NOW)
    # Genuine but older than SNS's retries (an hour at most), or from the future: refused.
    for now in (NOW + dt.timedelta(hours=2, seconds=1), NOW - dt.timedelta(minutes=6)):
        failed = verify.sns(message, cert, now=now)
        assert failed is not None and failed.startswith("stale timestamp"), failed
    # A Timestamp changed to look fresh breaks the signature.
    fresh = {**message, "Timestamp": "2026-12-07T10:30:00.000Z"}
    assert verify.sns(fresh, cert, now=NOW + dt.timedelta(hours=3)) == "signature does not match"
    other = trustme.CA(key_type=trustme.KeyType.RSA)
    other_cert = (
        other.issue_cert("sns.us-east-1.amazonaws.com", key_type=trustme.KeyType.RSA)
        .cert_chain_pems[0]
        .bytes()
    )
    assert verify.sns(message, other_cert, now=NOW)
    x509.load_pem_x509_certificate(cert)  # the PEM the test signed with is a real certificate


def test_sns_canonical_string_has_a_newline_after_each_value() -> None:
    message = {
        "Type": "Notification",
        "MessageId": "m",
        "TopicArn": "t",
        "Message": "x",
        "Timestamp": "ts",
    }
    assert verify.sns_canonical(message) == (
        b"Message\nx\nMessageId\nm\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    )
