"""Hardening points against a real ``serve`` subprocess: an old confirm link stays dead after the
reader left and signed up again; archive idents that ``isdigit()`` accepts but ``int()`` refuses
are a 404, not a 500; the form refuses names the composer refuses."""

from __future__ import annotations

import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.smtpd import SMTPServer
from tests.support.web_server import Server, run_cli, serve_env, sign_up_over_http
from tests.web.test_confirmation_outbox import confirm_path, wait_for

pytestmark = pytest.mark.slow


def _env(tmp_path: Path, backend_url: str = "memory://") -> dict[str, str]:
    return serve_env(tmp_path, backend_url, confirmations_per_address_per_day="5")


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
            assert sign_up_over_http(server.url, "kim@example.org")[0] == 200
            [first] = wait_for(smtp, "kim@example.org")
            link_a = server.url + confirm_path(first.data)
            assert _post(link_a) == 200
            assert _status(tmp_path) == [("active",)]

            left = run_cli(tmp_path, env, "subscribers", "unsubscribe", "kim@example.org")
            assert left.returncode == 0, left.stderr
            assert _status(tmp_path) == [("unsubscribed",)]

            # Anyone may submit the form.
            assert sign_up_over_http(server.url, "kim@example.org")[0] == 200
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
def test_archive_idents_that_are_not_ascii_digits_are_not_found(tmp_path: Path, ident: str) -> None:
    env = _env(tmp_path)
    assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
    with Server(tmp_path, env) as server:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"{server.url}/archive/{ident}", timeout=10)
        answer.value.close()
        assert answer.value.code == 404
        assert "Traceback" not in server.output()


@pytest.mark.parametrize("bad", ["\x7f", "\x85", "\x9b"])
def test_the_form_refuses_a_name_the_composer_would_refuse(tmp_path: Path, bad: str) -> None:
    env = _env(tmp_path)
    assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
    with Server(tmp_path, env) as server:
        status, page = sign_up_over_http(server.url, "ann@example.org", f"Ann{bad}Lee")
    assert status == 400
    assert b"the name" in page  # the form says what is wrong with it
    assert _status(tmp_path) == []  # nobody stored, nothing that fails every week
