"""The reader's own page in-process (Flask's client, the memory backend, a test clock): each
action through a POST with the CSRF pair, the mail it queues as the outbox delivers it, and
GET/HEAD of every page changing no row of any table."""

from __future__ import annotations

import datetime as dt
import json
import re

from flask import Flask
from flask.testing import FlaskClient

from tests.support.reader import every_row, parse, text_of, traces, urls
from tests.support.web import Clock, csrf_token, flush_mail, subscriber
from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import SubscriberStatus
from weekly_mailer.subscribers import reader
from weekly_mailer.tokens import TokenSigner

pytest_plugins = ["tests.support.web_fixtures"]

ADDRESS = "rosa.reader@example.org"


def _reader(database: Database, settings: Settings, address: str = ADDRESS) -> str:
    """An active reader; their manage path."""
    with database.sessions.begin() as session:
        sub = subs.add(session, address, name="Rosa", confirmed=True, source="cli")
        return "/manage/" + reader.manage_token(TokenSigner(settings.secret_key), sub)


def _post(client: FlaskClient, path: str, **form: str) -> object:
    token = csrf_token(client)  # GET / gives the cookie and a form token
    return client.post(path, data={"csrf_token": token, **form})


def _to(backend: MemoryBackend, address: str) -> list[bytes]:
    return [e.data for e in backend.sent if e.recipient == address]


def test_the_page_shows_the_record_and_get_and_head_change_nothing(
    client: FlaskClient, database: Database, web_settings: Settings
) -> None:
    path = _reader(database, web_settings)
    before = every_row(database)
    page = client.get(path)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert ADDRESS in body and "Rosa" in body and "active" in body
    assert "confirmed (cli)" in body  # the consent record
    assert client.head(path).status_code == 200
    assert client.get("/manage").status_code == 200
    assert every_row(database) == before
    assert client.get(path[:-3] + "xyz").status_code == 400  # a tampered token


def test_a_post_without_the_csrf_pair_changes_nothing(
    client: FlaskClient, database: Database, web_settings: Settings
) -> None:
    path = _reader(database, web_settings)
    before = every_row(database)
    answer = client.post(path, data={"action": "rename", "name": "Mallory"})
    assert answer.status_code == 400
    assert every_row(database) == before


def test_rename(client: FlaskClient, database: Database, web_settings: Settings) -> None:
    path = _reader(database, web_settings)
    answer = _post(client, path, action="rename", name="Rosa Lind")
    assert answer.status_code == 303  # type: ignore[attr-defined]
    sub = subscriber(database, ADDRESS)
    assert sub is not None and sub.name == "Rosa Lind"
    bad = _post(client, path, action="rename", name="a\x07b")
    assert bad.status_code == 400  # type: ignore[attr-defined]


def test_move_happens_only_when_confirmed_at_the_new_address(
    app: Flask,
    client: FlaskClient,
    database: Database,
    web_settings: Settings,
    backend: MemoryBackend,
) -> None:
    path = _reader(database, web_settings)
    _reader(database, web_settings, "taken@example.org")
    assert "cannot be used" in client.get(
        _post(client, path, action="move", email="taken@example.org").location  # type: ignore[attr-defined]
    ).get_data(as_text=True)
    _post(client, path, action="move", email="Rosa.New@example.org")
    flush_mail(app)
    assert subscriber(database, ADDRESS) is not None  # not moved yet
    [mail] = _to(backend, "Rosa.New@example.org")
    [link] = [u for u in urls(mail) if "/manage/move/" in u]
    before = every_row(database)
    assert client.get(link.removeprefix(web_settings.base_url)).status_code == 200
    assert every_row(database) == before  # the GET only shows a button
    done = client.post(link.removeprefix(web_settings.base_url))
    assert done.status_code == 200 and "now goes to Rosa.New@example.org" in done.get_data(
        as_text=True
    )
    assert subscriber(database, ADDRESS) is None
    moved = subscriber(database, "rosa.new@example.org")
    assert moved is not None and moved.email == "Rosa.New@example.org"
    flush_mail(app)
    [notice] = _to(backend, ADDRESS)
    assert "now goes to Rosa.New@example.org" in text_of(notice)
    assert client.get(path).status_code == 400  # the old manage link died with the address
    page = re.search(r'href="(/manage/[^"]+)"', done.get_data(as_text=True))
    assert page is not None
    shown = client.get(page.group(1)).get_data(as_text=True)
    assert f"from {ADDRESS} to Rosa.New@example.org" in shown  # the record keeps both


def test_pause_skips_the_enqueue_and_resume_ends_it(
    client: FlaskClient, database: Database, web_settings: Settings, clock: Clock
) -> None:
    from weekly_mailer.store.models import Subscriber

    path = _reader(database, web_settings)
    _post(client, path, action="pause", issues="2")
    with database.sessions.begin() as session:
        paused = session.get(Subscriber, subscriber(database, ADDRESS).id)  # type: ignore[union-attr]
        assert paused is not None and paused.paused_issues == 2
        assert reader.pause_label(paused, now=clock()) == "paused for 2 issues"
    assert "paused for the next 2 issues" in client.get(path).get_data(as_text=True)
    assert _post(client, path, action="pause", issues="13").status_code == 400  # type: ignore[attr-defined]
    _post(client, path, action="resume")
    sub = subscriber(database, ADDRESS)
    assert sub is not None and sub.paused_issues == 0
    until = (clock() + dt.timedelta(days=30)).date().isoformat()
    _post(client, path, action="pause", until=until)
    sub = subscriber(database, ADDRESS)
    assert sub is not None and sub.paused_until is not None
    assert f"paused until {until}" in client.get(path).get_data(as_text=True)


def test_the_data_copy_is_mailed_as_json_once_a_day(
    app: Flask,
    client: FlaskClient,
    database: Database,
    web_settings: Settings,
    backend: MemoryBackend,
) -> None:
    path = _reader(database, web_settings)
    page = client.get(_post(client, path, action="data").location).get_data(as_text=True)  # type: ignore[attr-defined]
    assert "on its way" in page and '"events"' not in page  # never shown on the page
    flush_mail(app)
    [mail] = _to(backend, ADDRESS)
    [attachment] = list(parse(mail).iter_attachments())
    assert attachment.get_filename() == "my-data.json"
    data = json.loads(attachment.get_content())
    assert data["subscriber"]["email"] == ADDRESS and data["subscriber"]["name"] == "Rosa"
    assert [e["kind"] for e in data["events"]][:2] == ["subscribed", "confirmed"]
    again = client.get(_post(client, path, action="data").location).get_data(as_text=True)  # type: ignore[attr-defined]
    assert "in the last day already" in again
    flush_mail(app)
    assert len(_to(backend, ADDRESS)) == 1


def test_forget_me_leaves_no_trace_and_an_import_keeps_them_off(
    app: Flask,
    client: FlaskClient,
    database: Database,
    web_settings: Settings,
    backend: MemoryBackend,
) -> None:
    path = _reader(database, web_settings)
    _post(client, path, action="data")
    flush_mail(app)
    assert _post(client, path, action="forget").status_code == 400  # type: ignore[attr-defined]
    gone = _post(client, path, action="forget", sure="yes")
    assert "You are forgotten" in gone.get_data(as_text=True)  # type: ignore[attr-defined]
    assert traces(database, ADDRESS) == []
    assert traces(database, "Rosa") == []
    assert client.get(path).status_code == 400
    with database.sessions.begin() as session:
        assert subs.count(session) == 0
        report = subs.import_rows(
            session,
            [subs.ParsedRow(line=2, email=ADDRESS, key=ADDRESS, name="", status=None)],
            [],
            confirmed=True,
            erased_key=web_settings.secret_key,
        )
    assert report.kept_unsubscribed == 1 and report.added == 0
    assert traces(database, ADDRESS) == []
    with database.sessions.begin() as session:
        report = subs.import_rows(
            session,
            [subs.ParsedRow(line=2, email=ADDRESS, key=ADDRESS, name="", status=None)],
            [],
            confirmed=True,
            resubscribe=True,
            erased_key=web_settings.secret_key,
        )
    assert report.added == 1
    back = subscriber(database, ADDRESS)
    assert back is not None and back.status == SubscriberStatus.ACTIVE


def test_lost_link_answers_readers_and_strangers_alike(
    app: Flask,
    client: FlaskClient,
    database: Database,
    web_settings: Settings,
    backend: MemoryBackend,
) -> None:
    path = _reader(database, web_settings)
    known = _post(client, "/manage", email=ADDRESS)
    stranger = _post(client, "/manage", email="nobody@example.org")
    assert known.status_code == stranger.status_code == 200  # type: ignore[attr-defined]
    assert known.get_data() == stranger.get_data()  # type: ignore[attr-defined]
    flush_mail(app)
    [mail] = _to(backend, ADDRESS)
    # The same reader's link: the same signed payload (the token's timestamp may differ by the
    # second it was made in).
    payload = web_settings.base_url + path.split(".", 1)[0] + "."
    assert any(u.startswith(payload) for u in urls(mail)), urls(mail)
    assert _to(backend, "nobody@example.org") == []
    _post(client, "/manage", email=ADDRESS)  # over the daily limit: the same page, no mail
    flush_mail(app)
    assert len(_to(backend, ADDRESS)) == 1
