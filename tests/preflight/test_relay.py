"""The relay check against real aiosmtpd relays: every step a send takes, nothing sent; and
`send` (a subprocess) stops with that one line, and stores nothing, when the relay refuses us."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.preflight.relays import Relay
from tests.support.send import Workspace
from tests.support.smtpd import free_port
from weekly_mailer.config import Settings
from weekly_mailer.preflight.relay import check_relay
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Issue

SENDER = "bounces@example.org"


def relay_settings(settings: Settings, url: str) -> Settings:
    return settings.replace(backend_url=url, bounce_address=SENDER, smtp_timeout=5)


def test_a_relay_that_takes_us_is_ok_and_nothing_is_sent(settings: Settings, tmp_path) -> None:
    with Relay(tmp_path) as relay:
        check = check_relay(relay_settings(settings, relay.backend_url()))
        assert relay.received() == []
    assert check.level == "ok", check
    assert check.what == (
        f"relay 127.0.0.1:{relay.port}: STARTTLS certificate verified, AUTH as newsroom, our "
        f"sender {SENDER} accepted (nothing sent)"
    )


# case: (relay options, URL maker, words of the one line)
CASES = {
    "not listening": (None, None, "does not answer"),
    "no STARTTLS": ({"tls": False, "auth": False}, None,
                    "does not offer STARTTLS, and backend_url asks for it"),
    "certificate for another host": ({"cert_host": "other.example"}, None,
                                     "its TLS certificate does not verify"),
    "AUTH refused": ({}, {"password": "wrong"}, "refused the login of 'newsroom' (535"),
    "MAIL FROM refused": ({"refuse_sender": SENDER}, None,
                          f"refuses our envelope sender {SENDER} (553 5.7.1"),
}  # fmt: skip


def _broken(case: str, tmp_path: Path) -> tuple[Relay | None, str]:
    options, login, _words = CASES[case]
    if options is None:
        return None, f"smtp://127.0.0.1:{free_port()}?starttls=true"
    relay = Relay(tmp_path, **options).start()
    return relay, relay.backend_url(**(login or {}))


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_refusal_is_one_fatal_line(settings: Settings, tmp_path: Path, case: str) -> None:
    relay, url = _broken(case, tmp_path)
    try:
        check = check_relay(relay_settings(settings, url))
    finally:
        if relay is not None:
            assert relay.received() == []
            relay.stop()
    assert check.level == "fail" and check.fatal, check
    assert CASES[case][2] in check.what
    assert "\n" not in check.what


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_send_stops_before_storing_anything(workdir: Path, case: str) -> None:
    relay, url = _broken(case, workdir)
    try:
        ws = Workspace(workdir, backend_url=url, bounce_address=SENDER, smtp_timeout=5)
        ws.add_subscribers(3)
        result = ws.run("send", "--yes")
    finally:
        if relay is not None:
            relay.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: relay 127.0.0.1:"), result.stderr
    assert CASES[case][2] in lines[0] and lines[0].endswith("nothing was stored")
    assert "Traceback" not in result.stderr
    with Database(ws.settings) as db, db.sessions() as session:
        assert session.query(Issue).count() == 0
    assert ws.ledger() == {}
    if relay is not None:
        assert relay.received() == []
