"""Hardening points against a real ``serve`` subprocess: an old confirm link stays dead after the
reader left and signed up again; archive idents that ``isdigit()`` accepts but ``int()`` refuses
are a 404, not a 500; the form refuses names the composer refuses."""

from __future__ import annotations

import http.cookiejar
import re
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.smtpd import SMTPServer
from tests.support.web_server import Server, run_cli
from tests.web.test_confirmation_outbox import _sign_up_over_http, confirm_path, wait_for

pytestmark = pytest.mark.slow


def _env(tmp_path: Path, backend_url: str) -> dict[str, str]:
    return {
        "WEEKLY_MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "WEEKLY_MAILER_BACKEND_URL": backend_url,
        "WEEKLY_MAILER_SECRET_KEY": "serve-hardening-secret",
        "WEEKLY_MAILER_LIST_NAME": "Hardening",
        "WEEKLY_MAILER_CONFIRMATIONS_PER_ADDRESS_PER_DAY": "5",
    }


def _post(url: str) -> int:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def _status(tmp_path: Path) -> list[tuple[str]]:
    with sqlite3.connect(tmp_path / "serve.db") as conn:
        return conn.execute("SELECT status FROM subscriber").fetchall()


def test_a_confirm_link_mailed_before_leaving_is_dead_after_a_new_sign_up(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        env = _env(tmp_path, smtp.url)
        assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
        with Server(tmp_path, env) as server:
            _sign_up_over_http(server.url, "kim@example.org")
            [first] = wait_for(smtp, "kim@example.org")
            link_a = server.url + confirm_path(first.data)
            assert _post(link_a) == 200
            assert _status(tmp_path) == [("active",)]

            left = run_cli(tmp_path, env, "subscribers", "unsubscribe", "kim@example.org")
            assert left.returncode == 0, left.stderr
            assert _status(tmp_path) == [("unsubscribed",)]

            _sign_up_over_http(server.url, "kim@example.org")  # anyone may submit the form
            deadline = time.monotonic() + 15
            while len(mails := smtp.to("kim@example.org")) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(mails) == 2, "the second sign-up mailed a fresh link"
            link_b = server.url + confirm_path(mails[1].data)
            assert link_b != link_a

            assert _post(link_a) == 400  # the old link: the plain invalid-link page
            assert _status(tmp_path) != [("active",)]
            assert _post(link_b) == 200  # the link of this sign-up works
            assert _status(tmp_path) == [("active",)]


@pytest.mark.parametrize("ident", ["%C2%B2", "%E2%91%A0", "%D9%A1"])  # ² ① ١
def test_archive_idents_that_are_not_ascii_digits_are_not_found(
    tmp_path: Path, ident: str
) -> None:
    env = _env(tmp_path, "memory://")
    assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
    with Server(tmp_path, env) as server:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"{server.url}/archive/{ident}", timeout=10)
        answer.value.close()
        assert answer.value.code == 404
        assert "Traceback" not in server.output()


def _sign_up_form(url: str, email: str, name: str = "") -> tuple[int, bytes, float]:
    """One sign-up over HTTP (fresh cookie and CSRF token); status, page and the POST's time."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(url + "/", timeout=10) as r:
        token = re.search(r'name="csrf_token" value="([^"]+)"', r.read().decode())
    assert token is not None
    body = urllib.parse.urlencode({"csrf_token": token.group(1), "email": email, "name": name})
    started = time.perf_counter()
    try:
        with opener.open(url + "/subscribe", data=body.encode(), timeout=10) as r:
            page, status = r.read(), int(r.status)
    except urllib.error.HTTPError as exc:
        page, status = exc.read(), int(exc.code)
        exc.close()
    return status, page, time.perf_counter() - started


@pytest.mark.parametrize("bad", ["\x7f", "\x85", "\x9b"])
def test_the_form_refuses_a_name_the_composer_would_refuse(tmp_path: Path, bad: str) -> None:
    env = _env(tmp_path, "memory://")
    assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
    with Server(tmp_path, env) as server:
        status, page, _ = _sign_up_form(server.url, "ann@example.org", f"Ann{bad}Lee")
    assert status == 400
    assert b"the name" in page  # the form says what is wrong with it
    assert _status(tmp_path) == []  # nobody stored, nothing that fails every week

