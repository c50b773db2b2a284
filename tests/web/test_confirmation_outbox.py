"""Confirmation e-mails go through the one outbox: a real SMTP server receives them from the
bounce address, DKIM-signed, with a deterministic Message-ID, from a web sign-up (the ``serve``
thread) and from ``subscribers add``; a sign-up survives a crash right after its answer."""

from __future__ import annotations

import re
import signal
import sqlite3
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path

import dkim
import pytest

from tests.conftest import init_in, run_cli
from tests.support.smtpd import Received, SMTPServer
from tests.support.web import Clock, csrf_token, sign_up, subscriber
from tests.support.web_server import Server, serve_env, sign_up_over_http
from tests.support.web_server import run_cli as run_serve_cli
from weekly_mailer.cli.dkim import generate_keys
from weekly_mailer.compose import confirmation_message_id
from weekly_mailer.config import Settings
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import SubscriberStatus
from weekly_mailer.tokens import VerpCodec

BOUNCES = "bounces@news.example.org"
DOMAIN = "news.example.org"
SELECTOR = "wm1"


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A private key file (made by `dkim keygen`'s code) and its DNS TXT record."""
    path = tmp_path_factory.mktemp("dkim") / "dkim_private.pem"
    return path, generate_keys(path).encode()


def dns_for(record: bytes) -> Callable[..., bytes]:
    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return record

    return dns


def wait_for(smtp: SMTPServer, address: str, *, seconds: float = 15) -> list[Received]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if got := smtp.to(address):
            return got
        time.sleep(0.05)
    return smtp.to(address)


def confirm_path(data: bytes) -> str:
    text = data.replace(b"=\r\n", b"").decode("ascii", "replace")
    found = re.search(r"/confirm/([A-Za-z0-9_.\-]+)", text)
    assert found, text
    return found.group(0)


def check_sealed(received: Received, settings: Settings, record: bytes, sub_id: int) -> None:
    # The envelope sender is the bounce address, in its VERP form for this delivery (row 1).
    assert received.mail_from == VerpCodec(settings.secret_key, BOUNCES).address(1)
    assert received.mail_from.startswith("bounces+1-")
    assert dkim.verify(received.data, dnsfunc=dns_for(record))
    assert not dkim.verify(received.data.replace(b"Hello", b"Hullo"), dnsfunc=dns_for(record))
    msg = message_from_bytes(received.data)
    assert msg["From"] == settings.from_address
    assert msg["DKIM-Signature"] is not None and f"d={DOMAIN}" in msg["DKIM-Signature"]
    assert msg["Message-ID"] == confirmation_message_id(settings, 1, sub_id)


def test_a_web_sign_up_is_sealed_and_delivered_by_the_outbox_thread(
    settings: Settings, database: Database, dkim_key: tuple[Path, bytes]
) -> None:
    from weekly_mailer.web import close_app, create_app

    key_file, record = dkim_key
    with SMTPServer() as smtp:
        s = settings.replace(
            backend_url=smtp.url,
            bounce_address=BOUNCES,
            dkim_domain=DOMAIN,
            dkim_selector=SELECTOR,
            dkim_key_file=str(key_file),
        )
        app = create_app(s, db=database, clock=Clock())  # deliver: serve's worker thread
        try:
            client = app.test_client()
            assert "Check your inbox" in sign_up(client, "ann@example.org").get_data(as_text=True)
            [received] = wait_for(smtp, "ann@example.org")
            sub = subscriber(database, "ann@example.org")
            assert sub is not None
            check_sealed(received, s, record, sub.id)
            assert client.post(confirm_path(received.data)).status_code == 200
            active = subscriber(database, "ann@example.org")
            assert active is not None and active.status == SubscriberStatus.ACTIVE
        finally:
            close_app(app)
        with database.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT kind, issue_id, status FROM delivery").all()
        assert rows == [("confirmation", None, "sent")]


def test_subscribers_add_is_sealed_the_same_way(
    workdir: Path, dkim_key: tuple[Path, bytes]
) -> None:
    key_file, record = dkim_key
    init_in(workdir)
    with SMTPServer() as smtp:
        env = {
            "WEEKLY_MAILER_BACKEND_URL": smtp.url,
            "WEEKLY_MAILER_FROM_ADDRESS": f"News <news@{DOMAIN}>",
            "WEEKLY_MAILER_BOUNCE_ADDRESS": BOUNCES,
            "WEEKLY_MAILER_DKIM_DOMAIN": DOMAIN,
            "WEEKLY_MAILER_DKIM_SELECTOR": SELECTOR,
            "WEEKLY_MAILER_DKIM_KEY_FILE": str(key_file),
        }
        r = run_cli("subscribers", "add", "pat@example.org", cwd=workdir, env=env)
        assert r.returncode == 0, r.stderr
        assert "Sent the confirmation link to pat@example.org." in r.stdout
        [received] = smtp.to("pat@example.org")  # delivered before the command returned
    from weekly_mailer.config import load_settings

    settings = load_settings(environ={k: v for k, v in env.items() if "DKIM" not in k})
    check_sealed(received, settings, record, 1)


@pytest.mark.slow
def test_a_sign_up_survives_a_crash_right_after_its_answer(tmp_path: Path) -> None:
    smtp = SMTPServer()  # chosen, not started: the mail server is down
    # The outbox thread may have claimed the row when the kill lands: its lease must run out
    # before the restarted server may take it, so keep the lease short.
    env = serve_env(tmp_path, smtp.url, lease_seconds="2")
    assert run_serve_cli(tmp_path, env, "db", "upgrade").returncode == 0
    first = Server(tmp_path, env).start()
    assert first.proc is not None
    try:
        status, page = sign_up_over_http(first.url, "kim@example.org")
        assert status == 200 and b"Check your inbox" in page
    finally:
        first.proc.send_signal(signal.SIGKILL)  # no clean shutdown, no release
        first.proc.wait()
        first.stop()
    with sqlite3.connect(tmp_path / "serve.db") as conn:
        assert conn.execute("SELECT status FROM subscriber").fetchall() == [("pending",)]
        # Committed with the sign-up, before the answer: still queued, or claimed by the thread
        # that was trying the (down) mail server when the kill landed.
        assert conn.execute("SELECT kind, status FROM delivery").fetchall() in (
            [("confirmation", "queued")],
            [("confirmation", "sending")],
        )

    env["WEEKLY_MAILER_BACKEND_URL"] = smtp.start().url
    try:
        with Server(tmp_path, env) as second:
            [received] = wait_for(smtp, "kim@example.org")
            time.sleep(1.5)  # a second poll finds nothing more to send
            assert len(smtp.to("kim@example.org")) == 1
            path = confirm_path(received.data)
            request = urllib.request.Request(second.url + path, data=b"", method="POST")
            with urllib.request.urlopen(request) as r:
                assert r.status == 200
        assert second.stop() == 0
    finally:
        smtp.stop()
    with sqlite3.connect(tmp_path / "serve.db") as conn:
        assert conn.execute("SELECT status FROM subscriber").fetchall() == [("active",)]
        assert conn.execute("SELECT status FROM delivery").fetchall() == [("sent",)]


def test_the_confirm_page_answer_is_the_same_with_the_thread_off(
    settings: Settings, database: Database
) -> None:
    """``deliver=False`` (``run``): the sign-up still commits its row and wakes ``on_queued``."""
    from weekly_mailer.web import close_app, create_app

    woken: list[int] = []
    app = create_app(
        settings, db=database, clock=Clock(), deliver=False, on_queued=lambda: woken.append(1)
    )
    try:
        client = app.test_client()
        csrf_token(client)
        assert "Check your inbox" in sign_up(client, "lee@example.org").get_data(as_text=True)
        assert woken == [1]
        sign_up(client, "lee@example.org")  # still queued: no second row, no second wake
        assert woken == [1]
        with database.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT kind, status FROM delivery").all()
        assert rows == [("confirmation", "queued")]
    finally:
        close_app(app)
