"""Confirm and unsubscribe links: GET shows a button, POST acts, RFC 8058 one-click, bad tokens."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.web import (
    Clock,
    app_on_postgresql,
    events,
    flush_mail,
    settle_mail,
    sign_up,
    snapshot,
    subscriber,
    token_for,
)
from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import EventKind, Subscriber, SubscriberStatus
from weekly_mailer.tokens import Purpose, TokenSigner

pytest_plugins = ["tests.support.web_fixtures"]


def _add(database: Database, email: str, *, confirmed: bool) -> Subscriber:
    with database.sessions.begin() as session:
        return subs.add(session, email, confirmed=confirmed, source="cli")


@pytest.fixture
def pending(database: Database) -> Subscriber:
    return _add(database, "ann@example.org", confirmed=False)


@pytest.fixture
def active(database: Database) -> Subscriber:
    return _add(database, "bob@example.org", confirmed=True)


def test_confirm_get_shows_a_button_and_only_post_activates(
    client: FlaskClient, database: Database, web_settings: Settings, pending: Subscriber
) -> None:
    url = "/confirm/" + token_for(web_settings, pending, Purpose.CONFIRM, database)
    before = snapshot(database)
    for _ in range(3):  # a scanner, a prefetcher, the person
        page = client.get(url)
        assert page.status_code == 200
        assert f'<form method="post" action="{url}"' in page.get_data(as_text=True)
        assert client.head(url).status_code == 200
    assert snapshot(database) == before
    done = client.post(url)
    assert done.status_code == 200 and "Welcome aboard" in done.get_data(as_text=True)
    sub = subscriber(database, "ann@example.org")
    assert sub is not None and sub.status == SubscriberStatus.ACTIVE
    assert sub.consent_source == "web:confirm ip=127.0.0.1"
    assert sub.consent_at is not None and sub.confirmed_at is not None
    assert len(events(database, "ann@example.org", EventKind.CONFIRMED)) == 1
    again = client.post(url)  # idempotent
    assert again.status_code == 200 and "You are subscribed" in again.get_data(as_text=True)
    assert len(events(database, "ann@example.org", EventKind.CONFIRMED)) == 1


def _bad_tokens(
    settings: Settings, database: Database, sub: Subscriber, other: Subscriber
) -> dict[str, str]:
    good = token_for(settings, sub, Purpose.CONFIRM, database)
    flipped = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    return {
        "tampered": flipped,
        "truncated": good[: len(good) // 2],
        "foreign secret": TokenSigner("another-secret").make(
            Purpose.CONFIRM, sub.id, sub.email_key
        ),
        "wrong purpose": token_for(settings, sub, Purpose.UNSUBSCRIBE),
        "other subscriber's address": TokenSigner(settings.secret_key).make(
            Purpose.CONFIRM, sub.id, other.email_key
        ),
        "unknown subscriber": TokenSigner(settings.secret_key).make(
            Purpose.CONFIRM, 99999, sub.email_key
        ),
        "garbage": "x" * 600,
    }


def _expired_token(
    settings: Settings, database: Database, sub: Subscriber, monkeypatch: pytest.MonkeyPatch
) -> str:
    past = time.time() - dt.timedelta(days=settings.confirm_ttl_days, hours=1).total_seconds()
    with monkeypatch.context() as m:
        m.setattr("itsdangerous.timed.time.time", lambda: past)
        return token_for(settings, sub, Purpose.CONFIRM, database)


def test_bad_confirm_tokens_get_one_plain_400_page(
    client: FlaskClient,
    database: Database,
    web_settings: Settings,
    pending: Subscriber,
    active: Subscriber,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = _bad_tokens(web_settings, database, pending, active)
    tokens["expired"] = _expired_token(web_settings, database, pending, monkeypatch)
    before = snapshot(database)
    bodies = set()
    for what, token in tokens.items():
        for method in (client.get, client.post):
            response = method("/confirm/" + token)
            assert response.status_code == 400, what
            bodies.add(response.data)
    assert len(bodies) == 1, "every refusal must look the same"
    page = bodies.pop().decode()
    assert "This link is not valid" in page
    assert "ann@" not in page and "expired" in page  # says what may be wrong, reveals nothing
    assert snapshot(database) == before


def test_a_token_just_inside_its_lifetime_still_works(
    client: FlaskClient,
    database: Database,
    web_settings: Settings,
    pending: Subscriber,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    past = time.time() - dt.timedelta(days=web_settings.confirm_ttl_days, hours=-1).total_seconds()
    with monkeypatch.context() as m:
        m.setattr("itsdangerous.timed.time.time", lambda: past)
        token = token_for(web_settings, pending, Purpose.CONFIRM, database)
    assert client.post("/confirm/" + token).status_code == 200


def test_unsubscribe_get_shows_a_button_post_unsubscribes_idempotently(
    client: FlaskClient, database: Database, web_settings: Settings, active: Subscriber
) -> None:
    url = "/unsubscribe/" + token_for(web_settings, active, Purpose.UNSUBSCRIBE)
    before = snapshot(database)
    page = client.get(url)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert f'<form method="post" action="{url}"' in text and "b…@example.org" in text
    assert client.head(url).status_code == 200
    assert snapshot(database) == before
    for _ in range(3):  # reusable, idempotent
        done = client.post(url)
        assert done.status_code == 200 and "You are unsubscribed" in done.get_data(as_text=True)
        assert 'action="/resubscribe/' in done.get_data(as_text=True)
    sub = subscriber(database, "bob@example.org")
    assert sub is not None and sub.status == SubscriberStatus.UNSUBSCRIBED
    left = events(database, "bob@example.org", EventKind.UNSUBSCRIBED)
    assert [(e.source, e.detail) for e in left] == [("web:unsubscribe", "ip=127.0.0.1")]
    assert "You are not subscribed" in client.get(url).get_data(as_text=True)


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_rfc8058_one_click(
    app: Flask, database: Database, web_settings: Settings, active: Subscriber, encoding: str
) -> None:
    url = "/unsubscribe/" + token_for(web_settings, active, Purpose.UNSUBSCRIBE)
    client = app.test_client(use_cookies=False)  # a mail provider's POST: no cookie, no CSRF
    if encoding == "urlencoded":
        kwargs = {
            "data": "List-Unsubscribe=One-Click",
            "content_type": "application/x-www-form-urlencoded",
        }
    else:
        boundary = "----wmboundary"
        body = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            f"One-Click\r\n--{boundary}--\r\n"
        )
        kwargs = {"data": body, "content_type": f"multipart/form-data; boundary={boundary}"}
    for _ in range(2):
        response = client.post(url, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 200
        assert "Location" not in response.headers
        assert "Set-Cookie" not in response.headers
    sub = subscriber(database, "bob@example.org")
    assert sub is not None and sub.status == SubscriberStatus.UNSUBSCRIBED
    left = events(database, "bob@example.org", EventKind.UNSUBSCRIBED)
    assert [e.source for e in left] == ["web:one-click"]


def test_bad_unsubscribe_tokens_get_the_plain_400_page(
    client: FlaskClient,
    database: Database,
    web_settings: Settings,
    active: Subscriber,
    pending: Subscriber,
) -> None:
    signer = TokenSigner(web_settings.secret_key)
    good = signer.make(Purpose.UNSUBSCRIBE, active.id, active.email_key)
    tokens = {
        "tampered": good[:10] + ("A" if good[10] != "A" else "B") + good[11:],
        "truncated": good[:-5],
        "foreign secret": TokenSigner("another").make(
            Purpose.UNSUBSCRIBE, active.id, active.email_key
        ),
        "confirm purpose": signer.make(Purpose.CONFIRM, active.id, active.email_key),
        "other address": signer.make(Purpose.UNSUBSCRIBE, active.id, pending.email_key),
    }
    before = snapshot(database)
    for what, token in tokens.items():
        for method in (client.get, client.post):
            response = method("/unsubscribe/" + token, data={"List-Unsubscribe": "One-Click"})
            assert response.status_code == 400, what
            assert "This link is not valid" in response.get_data(as_text=True)
    assert snapshot(database) == before


def test_complained_addresses_stay_complained(
    client: FlaskClient, database: Database, web_settings: Settings, active: Subscriber
) -> None:
    with database.sessions.begin() as session:
        sub = session.get(Subscriber, active.id)
        assert sub is not None
        sub.status = SubscriberStatus.COMPLAINED.value
    url = "/unsubscribe/" + token_for(web_settings, active, Purpose.UNSUBSCRIBE)
    assert client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    after = subscriber(database, "bob@example.org")
    assert after is not None and after.status == SubscriberStatus.COMPLAINED
    page = client.post(url).get_data(as_text=True)
    assert "/resubscribe/" not in page  # complaints are never invited back
    resub = client.post("/resubscribe/" + url.rsplit("/", 1)[1])
    assert resub.status_code == 400


def test_resubscribe_sends_a_fresh_confirmation_and_old_links_stay_dead(
    app: Flask,
    client: FlaskClient,
    database: Database,
    backend: MemoryBackend,
    web_settings: Settings,
    clock: Clock,
) -> None:
    sign_up(client, "cy@example.org")
    flush_mail(app)
    sub = subscriber(database, "cy@example.org")
    assert sub is not None
    old_confirm = "/confirm/" + token_for(web_settings, sub, Purpose.CONFIRM, database)
    assert client.post(old_confirm).status_code == 200
    unsub = token_for(web_settings, sub, Purpose.UNSUBSCRIBE)
    clock.advance(days=2)
    assert client.post("/unsubscribe/" + unsub).status_code == 200
    # The confirm link from before they left can never bring them back.
    assert client.get(old_confirm).status_code == 400
    assert client.post(old_confirm).status_code == 400
    gone = subscriber(database, "cy@example.org")
    assert gone is not None and gone.status == SubscriberStatus.UNSUBSCRIBED

    clock.advance(minutes=1)
    page = client.post("/resubscribe/" + unsub)
    assert page.status_code == 200 and "We sent a confirmation link" in page.get_data(as_text=True)
    flush_mail(app)
    assert len(events(database, "cy@example.org", EventKind.CONFIRMATION_SENT)) == 2
    assert len(backend.sent) == 2 and backend.sent[-1].recipient == "cy@example.org"
    # Asking again the same day sends nothing more.
    again = client.post("/resubscribe/" + unsub)
    assert "already sent" in again.get_data(as_text=True)
    assert len(events(database, "cy@example.org", EventKind.CONFIRMATION_SENT)) == 2

    fresh = "/confirm/" + token_for(web_settings, sub, Purpose.CONFIRM, database)
    clock.advance(minutes=5)
    assert client.post(fresh).status_code == 200
    back = subscriber(database, "cy@example.org")
    assert back is not None and back.status == SubscriberStatus.ACTIVE
    assert back.consent_at == clock.now  # a fresh consent record
    assert len(events(database, "cy@example.org", EventKind.RESUBSCRIBED)) == 1


@pytest.mark.postgres
def test_sign_up_confirm_and_one_click_on_postgresql(settings: Settings, pg_url: str) -> None:
    backend = MemoryBackend()
    with app_on_postgresql(settings, pg_url, backend) as (app, database, pg_settings):
        client = app.test_client()
        sign_up(client, "Pat@Example.org", "Pat")
        sign_up(client, "pat@example.org", "Pat")  # same person: one row, one e-mail
        flush_mail(app)
        assert len(backend.sent) == 1
        sub = subscriber(database, "pat@example.org")
        assert sub is not None
        assert (
            client.post(
                "/confirm/" + token_for(pg_settings, sub, Purpose.CONFIRM, database)
            ).status_code
            == 200
        )
        url = "/unsubscribe/" + token_for(pg_settings, sub, Purpose.UNSUBSCRIBE)
        # The mail provider's one-click and the person's button, at the same moment.
        barrier = threading.Barrier(6)
        codes: list[int] = []

        def one_click() -> None:
            scanner = app.test_client(use_cookies=False)
            barrier.wait()
            codes.append(scanner.post(url, data={"List-Unsubscribe": "One-Click"}).status_code)

        threads = [threading.Thread(target=one_click) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [200] * 6
        after = subscriber(database, "pat@example.org")
        assert after is not None and after.status == SubscriberStatus.UNSUBSCRIBED
        kinds = [e.kind for e in events(database, "pat@example.org")]
        assert kinds == ["subscribed", "confirmation_sent", "confirmed", "unsubscribed"]
        assert client.get("/healthz").json == {"status": "ok", "database": "ok"}


def test_a_lost_resubscribe_confirmation_can_be_asked_for_again(
    app: Flask,
    client: FlaskClient,
    database: Database,
    backend: MemoryBackend,
    web_settings: Settings,
    clock: Clock,
) -> None:
    from weekly_mailer.delivery.backends.base import Envelope
    from weekly_mailer.errors import TemporaryFailure

    sign_up(client, "dee@example.org")
    flush_mail(app)
    sub = subscriber(database, "dee@example.org")
    assert sub is not None and sub.confirmation_sent_at is not None
    first_sent_at = sub.confirmation_sent_at
    assert (
        client.post(
            "/confirm/" + token_for(web_settings, sub, Purpose.CONFIRM, database)
        ).status_code
        == 200
    )
    unsub = token_for(web_settings, sub, Purpose.UNSUBSCRIBE)
    clock.advance(days=2)
    assert client.post("/unsubscribe/" + unsub).status_code == 200

    def down(envelope: Envelope) -> None:
        raise TemporaryFailure("421 try later", code=421)

    backend.handler = down
    clock.advance(minutes=1)
    assert "We sent a confirmation link" in client.post("/resubscribe/" + unsub).get_data(
        as_text=True
    )
    settle_mail(app, clock)  # retried until retry_give_up_hours, then given up
    gone = subscriber(database, "dee@example.org")
    assert gone is not None and gone.confirmation_sent_at == first_sent_at  # put back

    backend.handler = None
    clock.advance(minutes=5)
    page = client.post("/resubscribe/" + unsub).get_data(as_text=True)
    assert "We sent a confirmation link" in page
    flush_mail(app)
    assert [e.recipient for e in backend.sent] == ["dee@example.org", "dee@example.org"]
    assert (
        client.post(
            "/confirm/" + token_for(web_settings, sub, Purpose.CONFIRM, database)
        ).status_code
        == 200
    )
    back = subscriber(database, "dee@example.org")
    assert back is not None and back.status == SubscriberStatus.ACTIVE


def _mailed_confirm_path(backend: MemoryBackend) -> str:
    text = backend.sent[-1].data.replace(b"=\r\n", b"").decode("ascii", "replace")
    found = re.search(r"/confirm/[A-Za-z0-9_.\-]+", text)
    assert found, text
    return found.group(0)


@pytest.mark.parametrize("confirmed_first", [False, True])
def test_a_confirm_link_mailed_before_leaving_stays_dead_after_a_new_sign_up(
    app: Flask,
    client: FlaskClient,
    database: Database,
    backend: MemoryBackend,
    web_settings: Settings,
    clock: Clock,
    confirmed_first: bool,
) -> None:
    sign_up(client, "eve@example.org")
    flush_mail(app)
    link_a = _mailed_confirm_path(backend)
    if confirmed_first:
        assert client.post(link_a).status_code == 200
    sub = subscriber(database, "eve@example.org")
    assert sub is not None
    clock.advance(minutes=1)
    unsub = "/unsubscribe/" + token_for(web_settings, sub, Purpose.UNSUBSCRIBE)
    assert client.post(unsub).status_code == 200
    clock.advance(days=1)  # past the daily limit of confirmation e-mails
    sign_up(client, "eve@example.org")  # anyone may send the form again
    flush_mail(app)
    assert len(backend.sent) == 2
    link_b = _mailed_confirm_path(backend)
    assert link_b != link_a

    before = snapshot(database)
    for method in (client.get, client.post):
        page = method(link_a)
        assert page.status_code == 400 and "This link is not valid" in page.get_data(as_text=True)
    assert snapshot(database) == before
    gone = subscriber(database, "eve@example.org")
    assert gone is not None and gone.status == SubscriberStatus.UNSUBSCRIBED

    clock.advance(minutes=1)
    assert client.post(link_b).status_code == 200
    back = subscriber(database, "eve@example.org")
    assert back is not None and back.status == SubscriberStatus.ACTIVE
    assert back.consent_at == clock.now
    # Once back, the old link is still dead: it belongs to the sign-up they left.
    assert client.post(link_a).status_code == 400


def test_a_confirm_link_is_dead_after_leaving_even_when_added_back_by_hand(
    app: Flask,
    client: FlaskClient,
    database: Database,
    backend: MemoryBackend,
    web_settings: Settings,
    clock: Clock,
) -> None:
    """``subscribers add --resubscribe`` makes them pending again: still no old link works."""
    sign_up(client, "fay@example.org")
    flush_mail(app)
    link_a = _mailed_confirm_path(backend)
    sub = subscriber(database, "fay@example.org")
    assert sub is not None
    clock.advance(minutes=1)
    assert (
        client.post("/unsubscribe/" + token_for(web_settings, sub, Purpose.UNSUBSCRIBE)).status_code
        == 200
    )
    clock.advance(minutes=1)
    with database.sessions.begin() as session:
        subs.add(session, "fay@example.org", resubscribe=True, source="cli", now=clock.now)
    assert client.post(link_a).status_code == 400
    again = subscriber(database, "fay@example.org")
    assert again is not None and again.status == SubscriberStatus.PENDING
