"""``weekly-mailer serve`` as a real subprocess: refuses an un-migrated database, serves the
pages under waitress, sends confirmation e-mails to a real SMTP server, stops cleanly."""

from __future__ import annotations

import http.cookiejar
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.smtpd import SMTPServer, free_port
from tests.support.web_server import (
    CSRF_TOKEN,
    SERVE_SECRET,
    Server,
    cli_env,
    run_cli,
    serve_env,
    sign_up_over_http,
)
from weekly_mailer.tokens import Purpose, TokenSigner

pytestmark = pytest.mark.slow


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    result = run_cli(tmp_path, serve_env(tmp_path), "serve", "--port", "1")
    assert result.returncode == 2
    assert result.stderr.startswith("Error: the database is empty: run `weekly-mailer init`")
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_empty_secret(tmp_path: Path) -> None:
    env = serve_env(tmp_path, secret_key="")
    assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
    result = run_cli(tmp_path, env, "serve", "--port", "1")
    assert result.returncode == 2  # a configuration error, as the README says
    assert result.stderr.strip() == (
        "Error: secret_key is empty: run `weekly-mailer init` or set one"
    )


def test_serve_signs_up_over_http_and_mails_the_confirmation(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        env = serve_env(tmp_path, smtp.url)
        assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
        server = Server(tmp_path, env)
        with server:
            jar = http.cookiejar.CookieJar()
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
            with opener.open(server.url + "/") as r:
                assert r.headers["Server"] == "weekly-mailer"  # waitress, not Flask's dev server
                token = CSRF_TOKEN.search(r.read().decode())
            assert token is not None
            body = urllib.parse.urlencode(
                {"csrf_token": token.group(1), "email": "sam@example.org", "name": "Sam"}
            ).encode()
            with opener.open(server.url + "/subscribe", data=body) as r:
                assert r.status == 200 and b"Check your inbox" in r.read()
            for _ in range(100):
                if smtp.to("sam@example.org"):
                    break
                time.sleep(0.1)
            [received] = smtp.to("sam@example.org")
            assert server.url.encode() + b"/confirm/" in received.data.replace(b"=\r\n", b"")
        assert server.stop() == 0
        assert "Stopped." in server.output()


def _sign_up(url: str, forwarded_for: str) -> int:
    """A bot's sign-up (the honeypot filled in) through a proxy that says it came from
    ``forwarded_for``."""
    headers = {"X-Forwarded-For": forwarded_for}
    status, _page = sign_up_over_http(url, "", website="bot", headers=headers)
    return status


@pytest.mark.parametrize("trusted", [False, True])
def test_the_per_ip_limit_believes_only_a_trusted_proxy(tmp_path: Path, trusted: bool) -> None:
    env = serve_env(tmp_path, signup_per_ip_per_hour="1")
    assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
    args = ("--trusted-proxy", "127.0.0.1") if trusted else ()
    with Server(tmp_path, env, *args) as server:
        first = _sign_up(server.url, "198.51.100.1")
        second = _sign_up(server.url, "198.51.100.2")
    assert first == 200
    assert second == (200 if trusted else 429)


def test_serve_on_a_taken_port_says_so_in_one_line(tmp_path: Path) -> None:
    env = serve_env(tmp_path)
    assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        result = run_cli(tmp_path, env, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert result.stdout == ""


def test_serve_under_the_path_of_base_url(tmp_path: Path) -> None:
    """base_url https://x.org/news: the pages' forms and links carry /news like the e-mails'."""
    env = serve_env(tmp_path, base_url="https://x.org/news")
    assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
    server = Server(tmp_path, env)
    root, server.url = server.url, server.url + "/news"
    with server:
        assert "/news/ (links use https://x.org/news)" in server.output()
        opener = urllib.request.build_opener()
        with opener.open(root + "/news/") as r:
            page = r.read().decode()
            cookie = r.headers["Set-Cookie"].split(";")[0]  # Secure (https): sent by hand
        assert '<form method="post" action="/news/subscribe"' in page
        assert 'href="/news/archive"' in page and 'href="/news/static/site.css' in page
        token = CSRF_TOKEN.search(page)
        assert token is not None
        body = urllib.parse.urlencode({"csrf_token": token.group(1), "email": "sam@example.org"})
        post = urllib.request.Request(
            root + "/news/subscribe", data=body.encode(), headers={"Cookie": cookie}
        )
        with opener.open(post) as r:
            assert r.status == 200 and b"Check your inbox" in r.read()
        with sqlite3.connect(tmp_path / "serve.db") as conn:
            sub_id, key = conn.execute("SELECT id, email_key FROM subscriber").fetchone()
        unsub = TokenSigner(SERVE_SECRET).make(Purpose.UNSUBSCRIBE, sub_id, key)
        with opener.open(f"{root}/news/unsubscribe/{unsub}") as r:
            page = r.read().decode()
        assert f'action="/news/unsubscribe/{unsub}"' in page
        with opener.open(f"{root}/news/unsubscribe/{unsub}", data=b"") as r:
            assert r.status == 200
    with sqlite3.connect(tmp_path / "serve.db") as conn:
        assert conn.execute("SELECT status FROM subscriber").fetchone() == ("unsubscribed",)


def test_the_daemon_serves_under_the_path_of_base_url(tmp_path: Path) -> None:
    """`weekly-mailer run` serves the same app: its pages carry base_url's path too."""
    env = serve_env(tmp_path, base_url="https://x.org/news/")
    assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
    port = free_port()
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "weekly_mailer", "run", "--port", str(port)],
            cwd=tmp_path,
            env=cli_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        page = ""
        for _ in range(200):
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/news/", timeout=2) as r:
                    page = r.read().decode()
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        assert '<form method="post" action="/news/subscribe"' in page, log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
