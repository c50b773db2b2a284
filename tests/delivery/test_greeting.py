"""The name we greet the relay with (``smtp_helo_name``): both SMTP engines say it in EHLO for
every kind of mail (a confirmation, an issue copy, a ``preview --send-test`` copy), as the real
aiosmtpd server records it; unset, it is the host's fully qualified name. ``doctor`` fails on a
name relays and filters score (``localhost``, a bare name, an unbracketed IP address)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from tests.conftest import init_in, run_cli
from tests.support.send import Workspace
from tests.support.smtpd import SMTPServer, _Handler
from weekly_mailer.config import load_settings
from weekly_mailer.delivery import resolve_backend
from weekly_mailer.delivery.backends.base import Envelope
from weekly_mailer.errors import ConfigError

ENGINES = [pytest.param("", id="pipelined"), pytest.param("?engine=smtplib", id="smtplib")]
NAME = "mail.news.example.org"


@pytest.mark.parametrize("engine", ENGINES)
def test_every_kind_of_mail_greets_with_the_configured_name(tmp_path: Path, engine: str) -> None:
    with SMTPServer() as smtp:
        ws = Workspace(
            tmp_path, backend_url=smtp.url + engine, smtp_helo_name=NAME, preflight="off",
            processes=1,
        )  # fmt: skip
        ws.add_subscribers(2)
        added = ws.run("subscribers", "add", "pat@example.org")
        assert added.returncode == 0, added.stderr
        sent = ws.run("send", "--yes")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        test = ws.run("preview", "--send-test", "editor@example.net", "-o", str(tmp_path / "p"))
        assert test.returncode == 0, test.stdout + test.stderr
        received = smtp.received()
    kinds = {m.rcpt_tos[0]: m.helo for m in received}
    assert set(kinds) == {
        "pat@example.org", "reader00000@example.org", "reader00001@example.org",
        "editor@example.net",
    }  # fmt: skip
    assert set(kinds.values()) == {NAME}, kinds


@pytest.mark.parametrize("engine", ENGINES)
def test_unset_it_is_the_hosts_fully_qualified_name(tmp_path: Path, engine: str) -> None:
    with SMTPServer() as smtp:
        settings = load_settings(environ={"WEEKLY_MAILER_BACKEND_URL": smtp.url + engine})
        assert settings.smtp_helo_name == ""
        with resolve_backend(settings) as backend:
            backend.send(Envelope("a@example.org", "b@example.org", b"Subject: x\r\n\r\nhi\r\n"))
        [got] = smtp.received()
    assert got.helo == socket.getfqdn()


@pytest.mark.parametrize("literal", ["[192.0.2.1]", "[IPv6:2001:db8::1]"])
def test_an_address_literal_goes_on_the_wire_as_written(tmp_path: Path, literal: str) -> None:
    with SMTPServer() as smtp:
        env = {"WEEKLY_MAILER_BACKEND_URL": smtp.url, "WEEKLY_MAILER_SMTP_HELO_NAME": literal}
        with resolve_backend(load_settings(environ=env)) as backend:
            backend.send(Envelope("a@example.org", "b@example.org", b"Subject: x\r\n\r\nhi\r\n"))
        [got] = smtp.received()
    assert got.helo == literal


@pytest.mark.parametrize("bad", ["mail example.org", "mail.example.org\r\nRCPT", "mäil.example"])
def test_a_name_that_cannot_go_on_the_ehlo_line_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^smtp_helo_name: "):
        load_settings(environ={"WEEKLY_MAILER_SMTP_HELO_NAME": bad})


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("localhost", "'localhost' is this machine's own name"),
        ("localhost.localdomain", "this machine's own name"),
        ("mailhost", "'mailhost' is a bare name, not a fully qualified one"),
        ("192.0.2.1", "'192.0.2.1' is an IP address without brackets (write it as [192.0.2.1])"),
        ("2001:db8::1", "is an IP address without brackets"),
        ("[not-an-ip]", "is not an address literal like [192.0.2.1]"),
    ],
)
def test_doctor_fails_on_a_name_filters_score(workdir: Path, name: str, why: str) -> None:
    init_in(workdir)
    # A relay that is not there: the greeting's line comes from the configuration alone.
    env = {"WEEKLY_MAILER_BACKEND_URL": "smtp://127.0.0.1:9", "WEEKLY_MAILER_SMTP_HELO_NAME": name,
           "WEEKLY_MAILER_PREFLIGHT": "off"}  # fmt: skip
    result = run_cli("doctor", cwd=workdir, env=env)
    assert result.returncode == 1, result.stdout
    [line] = [x for x in result.stdout.splitlines() if "smtp_helo_name" in x]
    assert line.startswith("FAIL  smtp_helo_name: EHLO ") and why in line, line
    assert "set smtp_helo_name to this host's public name" in line
    assert "Traceback" not in result.stderr


def test_doctor_names_the_key_when_the_default_is_localhost(workdir: Path) -> None:
    init_in(workdir)
    env = {"WEEKLY_MAILER_BACKEND_URL": "smtp://127.0.0.1:9"}
    result = run_cli("doctor", cwd=workdir, env=env)
    [line] = [x for x in result.stdout.splitlines() if "smtp_helo_name" in x]
    if socket.getfqdn() in ("localhost", "localhost.localdomain"):  # these machines
        assert line.startswith(
            "FAIL  smtp_helo_name (unset: the host's fully qualified name): EHLO 'localhost"
        ), line
        assert result.returncode == 1
    else:
        assert f"smtp_helo_name: EHLO {socket.getfqdn()}" in line


@pytest.mark.parametrize("name", ["mail.example.org", "[192.0.2.1]", "[IPv6:2001:db8::1]"])
def test_doctor_accepts_a_fully_qualified_name_or_a_literal(workdir: Path, name: str) -> None:
    init_in(workdir)
    env = {"WEEKLY_MAILER_BACKEND_URL": "smtp://127.0.0.1:9", "WEEKLY_MAILER_SMTP_HELO_NAME": name}
    result = run_cli("doctor", cwd=workdir, env=env)
    assert f"ok    smtp_helo_name: EHLO {name}" in result.stdout.splitlines()


def test_a_config_error_in_the_name_is_one_line_and_exit_2(workdir: Path) -> None:
    env = {"WEEKLY_MAILER_SMTP_HELO_NAME": "two words"}
    result = run_cli("doctor", cwd=workdir, env=env)
    assert result.returncode == 2
    assert "smtp_helo_name: 'two words' contains a space" in result.stderr
    assert "Traceback" not in result.stderr


class _GreetingAtMail(_Handler):
    """Records the greeting of each connection at its MAIL FROM (the relay check sends no
    DATA: MAIL, then RSET)."""

    async def handle_MAIL(
        self, srv: SMTP, session: Session, envelope: SmtpEnvelope, address: str,
        options: list[str],
    ) -> str:  # fmt: skip
        assert isinstance(self.server, _GreetingServer)
        self.server.greetings.append(str(session.host_name))
        envelope.mail_from = address
        return "250 OK"


class _GreetingServer(SMTPServer):
    def __init__(self) -> None:
        self.greetings: list[str] = []  # each connection's EHLO name, at its MAIL FROM
        super().__init__()

    def _controller(self) -> Controller:
        return Controller(_GreetingAtMail(self), hostname="127.0.0.1", port=self.port,
                          ready_timeout=10)  # fmt: skip


def test_the_relay_check_greets_with_the_configured_name() -> None:
    from weekly_mailer.preflight.relay import check_relay

    with _GreetingServer() as smtp:
        env = {"WEEKLY_MAILER_BACKEND_URL": smtp.url, "WEEKLY_MAILER_SMTP_HELO_NAME": NAME}
        check = check_relay(load_settings(environ=env))
        greetings = list(smtp.greetings)
    assert "takes our sender" in check.what, check.what
    assert greetings == [NAME]
    assert smtp.received() == []  # nothing sent
