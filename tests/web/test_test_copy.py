"""A ``preview --send-test`` copy's unsubscribe links (the List-Unsubscribe header's and the
body's) open a page that says it was a test copy; GET, a form POST and an RFC 8058 one-click
POST all answer 200 and change no row."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.send import Workspace
from tests.support.smtpd import SMTPServer
from tests.support.web import snapshot
from weekly_mailer.compose.links import is_probe_token, is_test_copy_token
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.store.db import Database
from weekly_mailer.web import close_app, create_app

_LINK = re.compile(r"https://news\.example\.org/(?:unsubscribe|manage)/[A-Za-z0-9_.\-]+")


def test_a_test_copys_links_say_so_and_change_nothing(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        ws = Workspace(tmp_path, backend_url=smtp.url, unsubscribe_mailto="leave@example.org",
                       preflight="off")  # fmt: skip
        ws.add_subscribers(2)
        result = ws.run("preview", "--send-test", "editor@example.net", "-o", str(tmp_path / "p"))
        assert result.returncode == 0, result.stdout + result.stderr
        [received] = smtp.received()
    msg = received.message
    [header_url] = re.findall(r"<(https://[^>]+)>", str(msg["List-Unsubscribe"]))
    body_urls = set()
    for kind in ("plain", "html"):
        part = msg.get_body((kind,))
        assert part is not None
        body_urls |= set(_LINK.findall(part.get_content()))
    assert header_url in body_urls  # the body's unsubscribe link is the header's
    token = header_url.rsplit("/", 1)[1]
    secret = ws.settings.secret_key
    assert is_test_copy_token(secret, token) and not is_probe_token(secret, token)

    with Database(ws.settings) as db:
        app = create_app(ws.settings, db=db, backend=MemoryBackend(), deliver=False)
        try:
            client = app.test_client()
            before = snapshot(db)
            assert len(before["subscriber"]) == 2
            for url in sorted(body_urls):
                path = url.removeprefix("https://news.example.org")
                for answer in (client.get(path), client.post(path)):
                    page = answer.get_data(as_text=True)
                    assert answer.status_code == 200, (path, page)
                    assert "<h1>This was a test copy</h1>" in page
                    assert "nothing was changed" in page
                    assert "Unsubscribe</button>" not in page
            one_click = client.post(
                header_url.removeprefix("https://news.example.org"),
                data={"List-Unsubscribe": "One-Click"},
            )
            assert one_click.status_code == 200
            assert one_click.get_data(as_text=True) == "test copy: nothing changed\n"
            assert one_click.mimetype == "text/plain"
            assert snapshot(db) == before
        finally:
            close_app(app)


def test_a_token_for_a_test_copy_is_signed_with_our_key() -> None:
    from weekly_mailer.compose.links import unsubscribe_url_for_test_copy
    from weekly_mailer.config import Settings

    settings = Settings(secret_key="k" * 40, base_url="https://news.example.org")
    token = unsubscribe_url_for_test_copy(settings).rsplit("/", 1)[1]
    assert is_test_copy_token(settings.secret_key, token)
    assert not is_test_copy_token("another-key" * 4, token)  # signed with our key only
    assert not is_test_copy_token(settings.secret_key, token[:-2] + "xx")
