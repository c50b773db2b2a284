"""Sign-up: CSRF, honeypot, per-IP and per-address limits, no enumeration, pending expiry."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from email.message import EmailMessage

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.web import (
    Clock,
    app_on_postgresql,
    csrf_token,
    events,
    flush_mail,
    outbox_rows,
    settle_mail,
    sign_up,
    snapshot,
    subscriber,
)
from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends.base import Envelope
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import EventKind, SubscriberStatus

pytest_plugins = ["tests.support.web_fixtures"]


def test_form_has_csrf_honeypot_and_security_headers(client: FlaskClient) -> None:
    response = client.get("/")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'name="email"' in page and 'name="name"' in page
    assert 'name="website"' in page and 'tabindex="-1"' in page  # the honeypot
    assert 'name="csrf_token"' in page
    assert "<script" not in page
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("wm_csrf=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp
    assert "default-src 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_sign_up_makes_a_pending_subscriber_and_sends_one_confirmation(
    app: Flask, client: FlaskClient, database: Database, backend: MemoryBackend
) -> None:
    response = sign_up(client, "Ann@Example.org", "Ann Example")
    assert response.status_code == 200
    assert "Check your inbox" in response.get_data(as_text=True)
    sub = subscriber(database, "ann@example.org")
    assert sub is not None and sub.status == SubscriberStatus.PENDING
    assert sub.name == "Ann Example" and sub.source == "web"
    assert sub.confirmation_sent_at is not None
    sent = events(database, "ann@example.org", EventKind.CONFIRMATION_SENT)
    assert len(sent) == 1 and sent[0].detail == "ip=127.0.0.1"
    flush_mail(app)
    assert [e.recipient for e in backend.sent] == ["Ann@example.org"]
    message = email.message_from_bytes(backend.sent[0].data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["To"].addresses[0].addr_spec == "Ann@example.org"
    assert backend.sent[0].message_id == message["Message-ID"]
    body = message.get_body(("plain",))
    assert body is not None
    urls = re.findall(r"https://news\.example\.org/confirm/[\w.-]+", body.get_content())
    assert urls, body.get_content()
    path = urls[0].removeprefix("https://news.example.org")
    assert client.post(path).status_code == 200
    confirmed = subscriber(database, "ann@example.org")
    assert confirmed is not None and confirmed.status == SubscriberStatus.ACTIVE


def test_without_a_csrf_token_nothing_happens(client: FlaskClient, database: Database) -> None:
    client.get("/")
    before = snapshot(database)
    bad = client.post("/subscribe", data={"email": "ann@example.org", "csrf_token": "forged"})
    assert bad.status_code == 400
    assert "The form had expired" in bad.get_data(as_text=True)
    # A token from the form but no cookie (another browser, a cross-site post): refused too.
    token = csrf_token(client)
    other = client.application.test_client()
    refused = other.post("/subscribe", data={"email": "ann@example.org", "csrf_token": token})
    assert refused.status_code == 400
    assert snapshot(database) == before


def test_a_post_without_our_cookie_says_so_and_offers_a_fresh_form(
    client: FlaskClient, database: Database
) -> None:
    # A form embedded on another site (or cookies off): the browser sends no wm_csrf cookie.
    token = csrf_token(client.application.test_client())
    before = snapshot(database)
    refused = client.post("/subscribe", data={"email": "ann@example.org", "csrf_token": token})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert "Your browser did not send our cookie: please use the form on this page." in page
    assert "The form had expired" not in page
    assert 'name="csrf_token"' in page and 'value="ann@example.org"' in page
    assert refused.headers["Set-Cookie"].startswith("wm_csrf=")
    assert snapshot(database) == before
    # the form on that page works (this browser keeps cookies)
    fresh = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert fresh is not None
    accepted = client.post(
        "/subscribe", data={"email": "ann@example.org", "csrf_token": fresh.group(1)}
    )
    assert accepted.status_code == 200
    assert "Check your inbox" in accepted.get_data(as_text=True)


def test_the_answer_is_identical_for_known_and_unknown_addresses(
    app: Flask, client: FlaskClient, database: Database
) -> None:
    with database.sessions.begin() as session:
        subs.add(session, "active@example.org", confirmed=True, source="cli")
        subs.add(session, "pending@example.org", source="cli")
        left = subs.add(session, "left@example.org", confirmed=True, source="cli")
        subs.unsubscribe(session, left, source="cli")
    answers = []
    for address in (
        "new@example.org",
        "active@example.org",
        "ACTIVE@example.org",
        "pending@example.org",
        "left@example.org",
        "new@example.org",  # again: known now, and over its daily limit
    ):
        response = sign_up(client, address)
        answers.append((response.status_code, sorted(response.headers.items()), response.data))
    assert all(a == answers[0] for a in answers), "the answer must not reveal the address"
    assert answers[0][0] == 200
    flush_mail(app)


def test_honeypot_gets_the_same_page_and_changes_nothing(
    app: Flask, client: FlaskClient, database: Database, backend: MemoryBackend
) -> None:
    normal = sign_up(client, "human@example.org")
    flush_mail(app)
    before = snapshot(database)
    trap = sign_up(client, "bot@example.org", website="http://spam.example")
    flush_mail(app)
    assert trap.status_code == normal.status_code == 200
    assert trap.data == normal.data
    assert snapshot(database) == before
    assert [e.recipient for e in backend.sent] == ["human@example.org"]


def test_per_ip_limit(app: Flask, web_settings: Settings, database: Database, clock: Clock) -> None:
    limit = web_settings.signup_per_ip_per_hour
    client = app.test_client()
    for i in range(limit):
        assert sign_up(client, f"a{i}@example.org").status_code == 200
    over = sign_up(client, "over@example.org")
    assert over.status_code == 429
    assert subscriber(database, "over@example.org") is None
    # Another address on the network is not affected.
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert sign_up(elsewhere, "other@example.org").status_code == 200
    clock.advance(hours=1, seconds=1)
    assert sign_up(client, "later@example.org").status_code == 200
    assert subscriber(database, "later@example.org") is not None
    flush_mail(app)


def test_per_address_limit_one_confirmation_a_day(
    app: Flask, client: FlaskClient, database: Database, backend: MemoryBackend, clock: Clock
) -> None:
    for _ in range(3):
        assert sign_up(client, "ann@example.org").status_code == 200
        clock.advance(hours=2)
    flush_mail(app)
    assert len(events(database, "ann@example.org", EventKind.CONFIRMATION_SENT)) == 1
    assert len(backend.sent) == 1
    clock.advance(hours=19)  # 25 hours after the first
    sign_up(client, "ann@example.org")
    flush_mail(app)
    assert len(events(database, "ann@example.org", EventKind.CONFIRMATION_SENT)) == 2
    assert len(backend.sent) == 2


def test_a_bad_address_is_shown_escaped(client: FlaskClient, database: Database) -> None:
    response = sign_up(client, "<script>alert(1)</script>")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert 'class="error"' in page
    assert snapshot(database)["subscriber"] == []


def test_pending_sign_ups_expire(
    app: Flask, client: FlaskClient, database: Database, clock: Clock, web_settings: Settings
) -> None:
    sign_up(client, "old@example.org")
    clock.advance(days=web_settings.pending_ttl_days, hours=1)
    sign_up(client, "new@example.org")
    flush_mail(app)
    assert subscriber(database, "old@example.org") is None
    assert subscriber(database, "new@example.org") is not None


@pytest.fixture
def small_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, max_request_bytes=2048)


def test_request_size_limit(small_settings: Settings, database: Database) -> None:
    from weekly_mailer.web import close_app, create_app

    app = create_app(small_settings, db=database, backend=MemoryBackend())
    try:
        client = app.test_client()
        token = csrf_token(client)
        response = client.post(
            "/subscribe", data={"csrf_token": token, "email": "a@example.org", "x": "y" * 5000}
        )
        assert response.status_code == 413
        assert "Too large" in response.get_data(as_text=True)
        assert snapshot(database)["subscriber"] == []
    finally:
        close_app(app)


def test_a_temporary_failure_is_retried_and_a_permanent_one_is_not(
    app: Flask, client: FlaskClient, backend: MemoryBackend, database: Database, clock: Clock
) -> None:
    from weekly_mailer.errors import PermanentFailure, TemporaryFailure

    tries: list[str] = []

    def flaky(envelope: Envelope) -> None:
        tries.append(envelope.recipient)
        if envelope.recipient == "gone@example.org":
            raise PermanentFailure("550 no such user", code=550)
        if tries.count(envelope.recipient) == 1:
            raise TemporaryFailure("451 try again later", code=451)

    backend.handler = flaky
    sign_up(client, "ann@example.org")
    sign_up(client, "gone@example.org")
    flush_mail(app)  # ann deferred (451), gone refused (550)
    assert sorted(tries) == ["ann@example.org", "gone@example.org"]
    assert outbox_rows(database, "ann@example.org") == [("deferred", "451 try again later", 1)]
    assert outbox_rows(database, "gone@example.org") == [("failed", "550 no such user", 1)]
    settle_mail(app, clock)  # the retry, once its time has come
    assert tries[2:] == ["ann@example.org"]
    assert [e.recipient for e in backend.sent] == ["ann@example.org"]
    assert outbox_rows(database, "ann@example.org") == [("sent", "", 2)]


def test_the_per_ip_limit_counts_an_ipv6_host_by_its_64() -> None:
    from weekly_mailer.web.security import network_key

    assert network_key("2001:db8:1:2:aaaa::1") == network_key("2001:db8:1:2:bbbb::9")
    assert network_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert network_key("2001:db8:1:3::1") != network_key("2001:db8:1:2::1")
    assert network_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert network_key("192.0.2.1") == "192.0.2.1" != network_key("192.0.2.2")


@pytest.mark.postgres
def test_simultaneous_sign_ups_for_one_address_send_one_email_on_postgresql(
    settings: Settings, pg_url: str
) -> None:
    import threading

    backend = MemoryBackend()
    with app_on_postgresql(settings, pg_url, backend) as (app, database, _settings):
        with database.sessions.begin() as session:  # known and pending: the race is the limit
            subs.add(session, "race@example.org", source="web")
        clients = [app.test_client() for _ in range(8)]
        tokens = [csrf_token(c) for c in clients]
        barrier = threading.Barrier(len(clients))
        codes: list[int] = []

        def go(client: FlaskClient, token: str) -> None:
            barrier.wait()
            response = client.post(
                "/subscribe", data={"csrf_token": token, "email": "race@example.org"}
            )
            codes.append(response.status_code)

        threads = [threading.Thread(target=go, args=ct) for ct in zip(clients, tokens, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        flush_mail(app)
        assert codes == [200] * len(clients)
        assert len(events(database, "race@example.org", EventKind.CONFIRMATION_SENT)) == 1
        assert [e.recipient for e in backend.sent] == ["race@example.org"]


def test_a_confirmation_the_mailer_gave_up_on_does_not_block_the_day(
    app: Flask, client: FlaskClient, database: Database, backend: MemoryBackend, clock: Clock
) -> None:
    from weekly_mailer.errors import TemporaryFailure

    def down(envelope: Envelope) -> None:
        raise TemporaryFailure("421 service not available", code=421)

    backend.handler = down
    sign_up(client, "ann@example.org")
    flush_mail(app)
    # Still in the outbox: the limit holds while the worker retries it.
    sub = subscriber(database, "ann@example.org")
    assert sub is not None and sub.confirmation_sent_at == clock.now
    settle_mail(app, clock)  # retried with backoff until retry_give_up_hours, then given up
    assert backend.attempts > 3 and backend.sent == []
    [(status, error, _tries)] = outbox_rows(database, "ann@example.org")
    assert status == "failed" and error.startswith("stale: not sent within retry_give_up_hours")
    sub = subscriber(database, "ann@example.org")
    assert sub is not None and sub.confirmation_sent_at is None
    [sent] = events(database, "ann@example.org", EventKind.CONFIRMATION_SENT)
    [failed] = events(database, "ann@example.org", EventKind.UPDATED)
    assert failed.source == "web:mailer"
    assert failed.detail.startswith(f"confirmation_failed event={sent.id}: stale: not sent")

    backend.handler = None  # the server is back, an hour later
    clock.advance(hours=1)
    assert "Check your inbox" in sign_up(client, "ann@example.org").get_data(as_text=True)
    flush_mail(app)
    assert [e.recipient for e in backend.sent] == ["ann@example.org"]
    assert len(events(database, "ann@example.org", EventKind.CONFIRMATION_SENT)) == 2
    sub = subscriber(database, "ann@example.org")
    assert sub is not None and sub.confirmation_sent_at == clock.now
    sign_up(client, "ann@example.org")  # the daily limit holds again for the one that went out
    flush_mail(app)
    assert len(backend.sent) == 1


def test_a_refused_confirmation_still_counts_towards_the_day(
    app: Flask, client: FlaskClient, database: Database, backend: MemoryBackend, clock: Clock
) -> None:
    from weekly_mailer.errors import PermanentFailure

    def refuse(envelope: Envelope) -> None:
        raise PermanentFailure("550 no such user", code=550)

    backend.handler = refuse
    sign_up(client, "gone@example.org")
    flush_mail(app)
    clock.advance(hours=1)
    sign_up(client, "gone@example.org")
    flush_mail(app)
    assert backend.attempts == 1
    assert events(database, "gone@example.org", EventKind.UPDATED) == []
