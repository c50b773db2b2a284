"""For the webhook tests: readers we sent an issue to, a snapshot of what a request may change,
the providers' signatures, and an https server on loopback (a CA and certificates the test
makes) that serves an SNS signing certificate and records the SubscribeURL it is asked for."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.support.web import START
from weekly_mailer.bounces.webhooks import verify
from weekly_mailer.store.bounce_models import BounceEvent, WebhookEvent
from weekly_mailer.store.models import Delivery, Issue, Subscriber, SubscriberEvent

WEEK = dt.date(2026, 11, 11)
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"


def readers(session: Session, *, sent_at: dt.datetime) -> dict[str, Subscriber]:
    """ann, bob, cy and dee: an issue (week :data:`WEEK`) was sent to the first three;
    dee is an active reader we never sent anything to."""
    issue = Issue(send_week=WEEK, status="sent", subject="Hedges", created_at=sent_at)
    session.add(issue)
    session.flush()
    found = {}
    for name in ("ann", "bob", "cy", "dee"):
        sub = Subscriber(email=f"{name}@example.org", email_key=f"{name}@example.org",
                         status="active", confirmed_at=sent_at)  # fmt: skip
        session.add(sub)
        session.flush()
        found[name] = sub
        if name != "dee":
            session.add(Delivery(issue_id=issue.id, subscriber_id=sub.id, status="sent",
                                 sent_at=sent_at, attempts=1))  # fmt: skip
    session.flush()
    return found


def delivery_of(session: Session, sub: Subscriber) -> Delivery:
    found = session.scalar(select(Delivery).where(Delivery.subscriber_id == sub.id))
    assert found is not None
    return found


def snapshot(session: Session) -> dict[str, Any]:
    """Everything a webhook request may change: statuses, bounce counts, the rows it writes."""
    return {
        "readers": sorted(
            (s.email_key, s.status, s.bounce_count) for s in session.scalars(select(Subscriber))
        ),
        "bounce_event": session.scalar(select(func.count()).select_from(BounceEvent)),
        "webhook_event": session.scalar(select(func.count()).select_from(WebhookEvent)),
        "subscriber_event": session.scalar(select(func.count()).select_from(SubscriberEvent)),
    }


def status(session: Session, email: str) -> str:
    sub = session.scalar(select(Subscriber).where(Subscriber.email_key == email))
    assert sub is not None
    return sub.status


# --- signatures ---------------------------------------------------------------------------


def mailgun_body(key: str, *, at: dt.datetime, token: str, event: dict[str, Any]) -> bytes:
    ts = str(int(at.timestamp()))
    sig = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {"signature": {"timestamp": ts, "token": token, "signature": sig}, "event-data": event}
    ).encode()


class SendGridKey:
    """An ECDSA P-256 key pair; ``public`` is what SendGrid shows (base64 DER)."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str) -> dict[str, str]:
        sig = self.private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }


# --- SNS: a CA, the https server and the signing certificate --------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.paths.append(self.path)
        if self.path.startswith("/cert.pem"):
            body, kind = self.server.cert_pem, "application/x-pem-file"
        elif self.path.startswith("/confirm"):
            body, kind = b"<ConfirmSubscriptionResponse/>", "text/xml"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    paths: list[str]
    cert_pem: bytes


class SnsHost:
    """A CA the test made; an https server on 127.0.0.1 whose certificate (issued by that CA)
    names ``localhost``; the SNS signing certificate (RSA, by the same CA) it serves at
    ``/cert.pem``; ``paths``: the GETs it answered."""

    def __init__(self, tmp: Path) -> None:
        self.ca = trustme.CA(key_type=trustme.KeyType.RSA)
        self.ca_file = tmp / "sns-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        signing = self.ca.issue_cert("sns.us-east-1.amazonaws.com", key_type=trustme.KeyType.RSA)
        self.cert_pem = signing.cert_chain_pems[0].bytes()
        key = serialization.load_pem_private_key(signing.private_key_pem.bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.key = key
        tls = self.ca.issue_cert("localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.configure_cert(context)
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.paths = []
        self.httpd.cert_pem = self.cert_pem
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.base = f"https://localhost:{self.port}"
        self.hosts = f"localhost:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def paths(self) -> list[str]:
        return self.httpd.paths

    def start(self) -> SnsHost:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def message(
        self,
        notification: dict[str, Any] | None = None,
        *,
        kind: str = "Notification",
        version: str = "1",
        message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        topic: str = TOPIC,
        cert_url: str | None = None,
        at: dt.datetime = START,
        **fields: str,
    ) -> dict[str, str]:
        """An SNS message published ``at`` (the tests' clock's start), signed with the signing
        certificate's key."""
        message = {
            "Type": kind,
            "MessageId": message_id,
            "TopicArn": topic,
            "Message": json.dumps(notification or {}),
            "Timestamp": f"{at:%Y-%m-%dT%H:%M:%S}.000Z",
            "SignatureVersion": version,
            "SigningCertURL": cert_url or f"{self.base}/cert.pem",
            **fields,
        }
        if kind == "SubscriptionConfirmation":
            message.setdefault("Token", "2336412f37fb687f5d51e6e2425c464de")
            message.setdefault("SubscribeURL", f"{self.base}/confirm?Token=2336412f")
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
        signature = self.key.sign(verify.sns_canonical(message), padding.PKCS1v15(), algorithm)
        message["Signature"] = base64.b64encode(signature).decode()
        return message


@contextmanager
def sns_host(tmp: Path) -> Iterator[SnsHost]:
    host = SnsHost(tmp).start()
    try:
        yield host
    finally:
        host.stop()


def ses_bounce(
    email: str, *, kind: str = "Permanent", sub: str = "General", diagnostic: str = "",
    source: str = "news@example.org", message_id: str = "",
) -> dict[str, Any]:  # fmt: skip
    """An SES bounce notification (the JSON SNS carries in ``Message``)."""
    mail: dict[str, Any] = {"source": source, "destination": [email]}
    if message_id:
        mail["commonHeaders"] = {"messageId": message_id}
    return {
        "notificationType": "Bounce",
        "mail": mail,
        "bounce": {
            "bounceType": kind,
            "bounceSubType": sub,
            "bouncedRecipients": [{"emailAddress": email, "diagnosticCode": diagnostic}],
        },
    }


def ses_complaint(email: str, feedback: str = "abuse", **mail: Any) -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "mail": {"source": "news@example.org", **mail},
        "complaint": {
            "complainedRecipients": [{"emailAddress": email}],
            "complaintFeedbackType": feedback,
        },
    }
