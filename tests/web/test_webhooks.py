"""``POST /webhooks/<provider>`` through the app, on SQLite and PostgreSQL: a valid event of each
provider bounces or complains the right reader, once; tampered, replayed, stale, wrongly hosted
(SNS: its certificate fetched over https from a loopback server with a CA the test made) or
unknown-topic events are refused with 403 and change nothing (the rows say so)."""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.support.web import Clock
from tests.support.webhooks import (
    TOPIC,
    WEEK,
    SendGridKey,
    SnsHost,
    delivery_of,
    mailgun_body,
    readers,
    ses_bounce,
    ses_complaint,
    snapshot,
    sns_host,
    status,
)
from weekly_mailer.compose import make_message_id
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.store.bounce_models import BounceEvent, WebhookEvent
from weekly_mailer.store.db import Database, make_engine, upgrade
from weekly_mailer.store.models import Subscriber
from weekly_mailer.tokens import VerpCodec
from weekly_mailer.web import close_app, create_app

MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
POSTMARK = "hooks:Pm-s3cret"
SENDGRID = SendGridKey()


@pytest.fixture
def sns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SnsHost]:
    with sns_host(tmp_path) as host:
        monkeypatch.setenv("SSL_CERT_FILE", str(host.ca_file))  # the app trusts the test's CA
        yield host


@pytest.fixture(params=["sqlite", "postgresql"])
def hook_settings(
    request: pytest.FixtureRequest, settings: Settings, sns: SnsHost
) -> Settings:
    chosen = settings.replace(
        bounce_address="bounces@example.org",
        bounce_limit=1,
        mailgun_signing_key=MAILGUN_KEY,
        postmark_webhook_credentials=POSTMARK,
        sendgrid_verification_key=SENDGRID.public,
        ses_topic_arns=(TOPIC,),
        sns_certificate_hosts=(sns.hosts,),
    )
    if request.param == "postgresql":
        chosen = chosen.replace(database_url=request.getfixturevalue("pg_url"))
    engine = make_engine(chosen.database_url)
    upgrade(engine)
    engine.dispose()
    return chosen


@pytest.fixture
def hook_db(hook_settings: Settings) -> Iterator[Database]:
    db = Database(hook_settings)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hooks(hook_settings: Settings, hook_db: Database, clock: Clock) -> Iterator[FlaskClient]:
    app = create_app(hook_settings, db=hook_db, backend=MemoryBackend(), clock=clock,
                     deliver=False)  # fmt: skip
    app.config["TESTING"] = True
    try:
        yield app.test_client()
    finally:
        close_app(app)


@pytest.fixture
def subs(hook_db: Database, clock: Clock) -> dict[str, int]:
    with hook_db.sessions.begin() as session:
        found = readers(session, sent_at=clock() - dt.timedelta(days=1))
        return {name: sub.id for name, sub in found.items()}


def _state(db: Database) -> dict[str, Any]:
    with db.sessions.begin() as session:
        return snapshot(session)


def _status(db: Database, name: str) -> str:
    with db.sessions.begin() as session:
        return status(session, f"{name}@example.org")


def _post(client: FlaskClient, provider: str, body: bytes, **headers: str) -> tuple[int, str]:
    r = client.post(f"/webhooks/{provider}", data=body, headers=headers,
                    content_type="application/json")  # fmt: skip
    return r.status_code, r.get_data(as_text=True)


def test_each_route_is_off_until_configured(settings: Settings, database: Database) -> None:
    app = create_app(settings, db=database, backend=MemoryBackend(), deliver=False)
    client = app.test_client()
    try:
        for provider in ("ses", "mailgun", "postmark", "sendgrid", "other"):
            assert client.post(f"/webhooks/{provider}", data=b"{}").status_code == 404
        assert client.get("/webhooks/ses").status_code in (404, 405)
    finally:
        close_app(app)


# --- Mailgun --------------------------------------------------------------------------------


def _mailgun_failed(email: str, message_id: str = "") -> dict[str, Any]:
    return {
        "event": "failed", "severity": "permanent", "reason": "bounce", "recipient": email,
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "message": {"headers": {"message-id": message_id.strip("<>")}},
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
    }  # fmt: skip


def test_mailgun(
    hooks: FlaskClient, hook_db: Database, hook_settings: Settings, clock: Clock,
    subs: dict[str, int],
) -> None:  # fmt: skip
    now = clock()
    ours = make_message_id(hook_settings, WEEK, subs["ann"])
    good = mailgun_body(MAILGUN_KEY, at=now, token="t" * 50,
                        event=_mailgun_failed("ann@example.org", ours))  # fmt: skip
    # Refused, and nothing changes: a wrong key, a stale timestamp, no signature at all.
    before = _state(hook_db)
    wrong = mailgun_body("not-the-key", at=now, token="u" * 50,
                         event=_mailgun_failed("ann@example.org"))  # fmt: skip
    stale = mailgun_body(MAILGUN_KEY, at=now - dt.timedelta(minutes=6), token="v" * 50,
                         event=_mailgun_failed("ann@example.org"))  # fmt: skip
    tampered = json.loads(good)
    tampered["signature"]["token"] = "w" * 50  # the HMAC is of timestamp + token
    unsigned = json.dumps({"event-data": _mailgun_failed("ann@example.org")}).encode()
    for body in (wrong, stale, json.dumps(tampered).encode(), unsigned, b"not json"):
        assert _post(hooks, "mailgun", body) == (403, "refused\n")
    assert _state(hook_db) == before
    # The genuine event bounces ann (tied by our Message-ID), and only ann.
    assert _post(hooks, "mailgun", good) == (200, "ok\n")
    assert _status(hook_db, "ann") == "bounced"
    assert [_status(hook_db, n) for n in ("bob", "cy", "dee")] == ["active"] * 3
    with hook_db.sessions.begin() as session:
        row = session.scalars(select(BounceEvent)).one()
        assert (row.kind, row.subscriber_id, row.trusted) == ("hard", subs["ann"], True)
        ann = session.get_one(Subscriber, subs["ann"])
        assert row.delivery_id == delivery_of(session, ann).id
        assert session.get(WebhookEvent, ("mailgun", "t" * 50)) is not None
    # Replayed: the same token is never accepted twice.
    after = _state(hook_db)
    assert _post(hooks, "mailgun", good) == (403, "refused\n")
    assert _state(hook_db) == after
    # Mailgun delivering the same event again under a new token: no second bounce_event row.
    again = mailgun_body(MAILGUN_KEY, at=now, token="y" * 50,
                         event=_mailgun_failed("ann@example.org", ours))  # fmt: skip
    assert _post(hooks, "mailgun", again) == (200, "ok\n")
    assert _state(hook_db)["bounce_event"] == after["bounce_event"]
    complaint = {"event": "complained", "recipient": "bob@example.org", "id": "c1"}
    assert _post(hooks, "mailgun", mailgun_body(MAILGUN_KEY, at=now, token="x" * 50,
                                                 event=complaint)) == (200, "ok\n")  # fmt: skip
    assert _status(hook_db, "bob") == "complained"


# --- Postmark -------------------------------------------------------------------------------


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def _postmark_bounce(email: str, ident: int, kind: str = "HardBounce") -> bytes:
    return json.dumps({
        "RecordType": "Bounce", "ID": ident, "Type": kind, "TypeCode": 1, "Email": email,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Description": "The server was "
        "unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "BouncedAt": "2026-11-18T11:00:00Z", "Metadata": {},
    }).encode()  # fmt: skip


def test_postmark(hooks: FlaskClient, hook_db: Database, subs: dict[str, int]) -> None:
    body = _postmark_bounce("ann@example.org", 4323372036854775807)
    before = _state(hook_db)
    assert _post(hooks, "postmark", body) == (403, "refused\n")  # no auth
    for wrong in ("hooks:Pm-s3creT", "hooks", "other:Pm-s3cret"):
        assert _post(hooks, "postmark", body, Authorization=_basic(wrong)) == (403, "refused\n")
    assert _post(hooks, "postmark", body, Authorization="Bearer Pm-s3cret")[0] == 403
    assert _state(hook_db) == before
    auth = _basic(POSTMARK)
    assert _post(hooks, "postmark", body, Authorization=auth) == (200, "ok\n")
    assert _status(hook_db, "ann") == "bounced"
    after = _state(hook_db)
    assert _post(hooks, "postmark", body, Authorization=auth) == (403, "refused\n")  # replayed
    assert _state(hook_db) == after
    complaint = json.dumps({"RecordType": "SpamComplaint", "ID": 77, "Type": "SpamComplaint",
                            "Email": "bob@example.org"}).encode()  # fmt: skip
    assert _post(hooks, "postmark", complaint, Authorization=auth) == (200, "ok\n")
    assert _status(hook_db, "bob") == "complained"
    soft = _postmark_bounce("cy@example.org", 78, kind="SoftBounce")
    assert _post(hooks, "postmark", soft, Authorization=auth) == (200, "ok\n")
    assert _status(hook_db, "cy") == "active"  # a soft bounce is recorded only
    assert _post(hooks, "postmark", b"[1,2", Authorization=auth)[0] == 400


def test_an_event_naming_an_address_we_never_sent_to_changes_nobody(
    hooks: FlaskClient, hook_db: Database, subs: dict[str, int]
) -> None:
    auth = _basic(POSTMARK)
    for n, email in enumerate(("dee@example.org", "stranger@example.org")):
        body = _postmark_bounce(email, 900 + n)
        assert _post(hooks, "postmark", body, Authorization=auth) == (200, "ok\n")
    assert _status(hook_db, "dee") == "active"
    with hook_db.sessions.begin() as session:
        rows = session.scalars(select(BounceEvent).order_by(BounceEvent.id)).all()
        assert [(r.recipient, r.trusted) for r in rows] == [
            ("dee@example.org", False), ("stranger@example.org", False)
        ]  # fmt: skip


# --- SendGrid -------------------------------------------------------------------------------


def _sendgrid_batch(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


def test_sendgrid(
    hooks: FlaskClient,
    hook_db: Database,
    hook_settings: Settings,
    subs: dict[str, int],
    clock: Clock,
) -> None:
    ours = make_message_id(hook_settings, WEEK, subs["ann"])
    body = _sendgrid_batch(
        {"email": "ann@example.org", "event": "bounce", "type": "bounce", "status": "5.1.1",
         "reason": "550 5.1.1 The email account that you tried to reach does not exist",
         "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
         "smtp-id": ours, "timestamp": 1795000000},
        {"email": "bob@example.org", "event": "spamreport", "sg_event_id": "c3BhbS0xMjM",
         "timestamp": 1795000000},
        {"email": "cy@example.org", "event": "delivered", "sg_event_id": "ZGVsaXZlcmVk"},
    )  # fmt: skip
    ts = "1795000000"
    headers = SENDGRID.headers(body, ts)
    before = _state(hook_db)
    assert _post(hooks, "sendgrid", body + b" ", **headers) == (403, "refused\n")  # tampered
    assert _post(hooks, "sendgrid", body, **{**headers,
                 "X-Twilio-Email-Event-Webhook-Timestamp": "1795000001"})[0] == 403  # fmt: skip
    assert _post(hooks, "sendgrid", body)[0] == 403  # unsigned
    stale = SENDGRID.headers(body, str(int((clock() - dt.timedelta(days=3, hours=1)).timestamp())))
    assert _post(hooks, "sendgrid", body, **stale) == (403, "refused\n")  # older than retries
    other = SendGridKey().headers(body, ts)
    assert _post(hooks, "sendgrid", body, **other)[0] == 403  # signed by another key
    assert _state(hook_db) == before
    assert _post(hooks, "sendgrid", body, **headers) == (200, "ok\n")
    assert [_status(hook_db, n) for n in ("ann", "bob", "cy")] == [
        "bounced", "complained", "active"
    ]  # fmt: skip
    after = _state(hook_db)
    assert after["webhook_event"] == before["webhook_event"] + 3
    assert _post(hooks, "sendgrid", body, **headers) == (403, "refused\n")  # replayed
    assert _state(hook_db) == after
    # A batch holding one new event twice and an old one: the new one applied once.
    twice = _sendgrid_batch(
        *[{"email": "cy@example.org", "event": "spamreport", "sg_event_id": "bmV3"}] * 2,
        {"email": "bob@example.org", "event": "spamreport", "sg_event_id": "c3BhbS0xMjM"},
    )
    assert _post(hooks, "sendgrid", twice, **SENDGRID.headers(twice, ts)) == (200, "ok\n")
    assert _status(hook_db, "cy") == "complained"
    assert _state(hook_db)["bounce_event"] == after["bounce_event"] + 1
    assert _state(hook_db)["webhook_event"] == after["webhook_event"] + 1


# --- Amazon SES through SNS -----------------------------------------------------------------


def _sns(client: FlaskClient, message: dict[str, str]) -> tuple[int, str]:
    r = client.post("/webhooks/ses", data=json.dumps(message), content_type="text/plain",
                    headers={"x-amz-sns-message-type": message.get("Type", "")})  # fmt: skip
    return r.status_code, r.get_data(as_text=True)


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_bounce_and_complaint_verified_with_the_certificate_served_over_https(
    hooks: FlaskClient, hook_db: Database, hook_settings: Settings, sns: SnsHost,
    subs: dict[str, int], version: str,
) -> None:  # fmt: skip
    verp = VerpCodec(hook_settings.secret_key, "bounces@example.org")
    with hook_db.sessions.begin() as session:
        ann_delivery = delivery_of(session, session.get_one(Subscriber, subs["ann"])).id
    bounce = sns.message(
        ses_bounce("ann@example.org", diagnostic="smtp; 550 5.1.1 user unknown",
                   source=verp.address(ann_delivery)),
        version=version, message_id="m-bounce",
    )  # fmt: skip
    assert _sns(hooks, bounce) == (200, "ok\n")
    ours = make_message_id(hook_settings, WEEK, subs["bob"])
    complaint = sns.message(ses_complaint("bob@example.org", commonHeaders={"messageId": ours}),
                            version=version, message_id="m-complaint")  # fmt: skip
    assert _sns(hooks, complaint) == (200, "ok\n")
    assert [_status(hook_db, n) for n in ("ann", "bob", "cy")] == [
        "bounced", "complained", "active"
    ]  # fmt: skip
    with hook_db.sessions.begin() as session:
        rows = session.scalars(select(BounceEvent).order_by(BounceEvent.id)).all()
        assert [(r.kind, r.delivery_id is not None, r.trusted) for r in rows] == [
            ("hard", True, True), ("complaint", True, True)
        ]  # fmt: skip
        assert rows[0].delivery_id == ann_delivery
    assert sns.paths.count("/cert.pem") == 1  # fetched once, then from the cache
    after = _state(hook_db)
    assert _sns(hooks, bounce) == (403, "refused\n")  # replayed
    assert _state(hook_db) == after


def test_ses_refusals_change_nothing(
    hooks: FlaskClient, hook_db: Database, sns: SnsHost, subs: dict[str, int]
) -> None:
    def bounce(**kw: Any) -> dict[str, str]:
        return sns.message(ses_bounce("ann@example.org"), **kw)

    good = bounce(message_id="m-good")
    tampered = {**good, "Message": good["Message"].replace("ann@", "bob@")}
    refused = {
        "tampered": tampered,
        "unknown topic": bounce(topic="arn:aws:sns:us-east-1:123456789012:someone-else"),
        "certificate host not allowed": bounce(cert_url=f"https://127.0.0.1:{sns.port}/cert.pem"),
        "certificate over http": bounce(cert_url=f"http://localhost:{sns.port}/cert.pem"),
        "certificate elsewhere": bounce(cert_url="https://sns.us-east-1.amazonaws.com.evil.org/c"),
        "signature version 3": {**good, "SignatureVersion": "3"},
        "unsigned": {k: v for k, v in good.items() if k != "Signature"},
        # Signed, but published more than 2 hours before now (SNS retries for an hour at
        # most), or ahead of our clock: no delivery SNS makes.
        "stale": bounce(message_id="m-old", Timestamp="2026-11-18T09:59:59.000Z"),
        "from the future": bounce(message_id="m-new", Timestamp="2026-11-18T12:06:00.000Z"),
    }
    before = _state(hook_db)
    for name, message in refused.items():
        assert _sns(hooks, message) == (403, "refused\n"), name
    assert _state(hook_db) == before
    assert sns.paths.count("/cert.pem") <= 1  # only the allowed URL was ever fetched
    assert not [p for p in sns.paths if p != "/cert.pem"]
    assert _sns(hooks, good) == (200, "ok\n")
    assert _status(hook_db, "ann") == "bounced"


def test_ses_subscription_is_confirmed_only_on_an_allowed_host(
    hooks: FlaskClient, hook_db: Database, sns: SnsHost
) -> None:
    url = f"https://127.0.0.1:{sns.port}/confirm?Token=x"
    elsewhere = sns.message(kind="SubscriptionConfirmation", message_id="s-1", SubscribeURL=url)
    assert _sns(hooks, elsewhere) == (403, "refused\n")
    assert not [p for p in sns.paths if p.startswith("/confirm")]
    confirm = sns.message(kind="SubscriptionConfirmation", message_id="s-2")
    assert _sns(hooks, confirm) == (200, "ok\n")
    assert [p for p in sns.paths if p.startswith("/confirm")] == ["/confirm?Token=2336412f"]
    unknown = sns.message(kind="SubscriptionConfirmation", message_id="s-3",
                          topic="arn:aws:sns:us-east-1:123456789012:other")  # fmt: skip
    assert _sns(hooks, unknown) == (403, "refused\n")
    assert len([p for p in sns.paths if p.startswith("/confirm")]) == 1


def test_the_same_event_posted_at_once_is_applied_once(
    hooks: FlaskClient, hook_db: Database, subs: dict[str, int]
) -> None:
    body, auth = _postmark_bounce("ann@example.org", 31337), _basic(POSTMARK)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(
            lambda _: _post(hooks, "postmark", body, Authorization=auth)[0], range(6)
        ))  # fmt: skip
    assert sorted(codes) == [200] + [403] * 5
    with hook_db.sessions.begin() as session:
        assert snapshot(session)["bounce_event"] == 1
        assert snapshot(session)["webhook_event"] == 1
    assert _status(hook_db, "ann") == "bounced"


def test_a_tie_to_another_readers_message_believes_nothing(
    hooks: FlaskClient, hook_db: Database, hook_settings: Settings, sns: SnsHost,
    subs: dict[str, int],
) -> None:  # fmt: skip
    """Ann's genuine VERP address and Message-ID in events naming dee (whom we never sent
    anything): dee is not bounced, ann is not touched, the rows are untrusted."""
    verp = VerpCodec(hook_settings.secret_key, "bounces@example.org")
    with hook_db.sessions.begin() as session:
        ann_delivery = delivery_of(session, session.get_one(Subscriber, subs["ann"])).id
    ann_id = make_message_id(hook_settings, WEEK, subs["ann"])
    bounce = sns.message(ses_bounce("dee@example.org", source=verp.address(ann_delivery),
                                    message_id=ann_id), message_id="m-dee")  # fmt: skip
    assert _sns(hooks, bounce) == (200, "ok\n")
    mg = mailgun_body(MAILGUN_KEY, at=hooks.application.extensions["weekly_mailer"].clock(),
                      token="d" * 50, event=_mailgun_failed("dee@example.org", ann_id))  # fmt: skip
    assert _post(hooks, "mailgun", mg) == (200, "ok\n")
    assert [_status(hook_db, n) for n in ("ann", "dee")] == ["active", "active"]
    with hook_db.sessions.begin() as session:
        rows = session.scalars(select(BounceEvent)).all()
        assert [(r.recipient, r.trusted, r.delivery_id) for r in rows] == [
            ("dee@example.org", False, None)
        ] * 2
