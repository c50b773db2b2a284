"""One-click unsubscribe through the public base_url: the real app answers the signed probe 200
and changes nothing; an endpoint answering 500, or nothing listening, fails the check."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from tests.support.smtpd import free_port
from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.preflight.oneclick import check_one_click
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Subscriber

pytest_plugins = ["tests.support.web_fixtures"]


@contextmanager
def serving(app: object) -> Iterator[str]:
    server = make_server("127.0.0.1", free_port(), app)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


class _Fails(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_app_answers_the_probe_and_changes_nothing(
    app: Flask, web_settings: Settings, database: Database
) -> None:
    with database.sessions.begin() as session:
        subs.add(session, "ada@example.org", confirmed=True, source="cli")
    with serving(app) as base:
        check = check_one_click(web_settings.replace(base_url=base))
    assert check.level == "ok", check
    assert check.what == f"one-click unsubscribe: POST {base}/unsubscribe/… answers 200"
    with database.sessions() as session:
        assert [s.status for s in session.scalars(select(Subscriber))] == ["active"]


def test_an_endpoint_answering_500_fails(settings: Settings) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fails)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        check = check_one_click(settings.replace(base_url=base))
    finally:
        server.shutdown()
        server.server_close()
    assert check.level == "fail"
    assert f"POST {base}/unsubscribe/… answers 500, not 2xx" in check.what
    assert "serve the web app at" in check.what


def test_nothing_listening_fails(settings: Settings) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    check = check_one_click(settings.replace(base_url=base), timeout=3)
    assert check.level == "fail" and f"{base} does not answer" in check.what
