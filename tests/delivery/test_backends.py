"""Backends: SMTP against a real aiosmtpd server, file, console, entry points, rate limiting."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.smtpd import Faults, SMTPServer
from weekly_mailer.config import Settings
from weekly_mailer.delivery import resolve_backend
from weekly_mailer.delivery.backends.base import Backend, BackendUnavailableError, Envelope
from weekly_mailer.delivery.backends.console import ConsoleBackend
from weekly_mailer.delivery.backends.file import FileBackend, folder_from_url
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.delivery.backends.pipelined import PipelinedSMTPBackend
from weekly_mailer.delivery.backends.smtp import SMTPBackend
from weekly_mailer.delivery.ratelimit import ThrottleGate, TokenBucket
from weekly_mailer.errors import ConfigError, PermanentFailure, TemporaryFailure


def envelope(to: str, n: int = 0) -> Envelope:
    mid = f"<m{n}.{to}@test>"
    data = (
        f"From: news@example.org\r\nTo: {to}\r\nSubject: Hi {n}\r\nMessage-ID: {mid}\r\n"
        f"\r\nBody line\r\n.leading dot\r\n"
    ).encode()
    return Envelope("news@example.org", to, data, mid)


def test_resolve_backend_by_scheme(tmp_path: Path) -> None:
    s = Settings(backend_url=f"file://{tmp_path}")
    assert isinstance(resolve_backend(s), FileBackend)
    assert isinstance(resolve_backend(s.replace(backend_url="console://")), ConsoleBackend)
    assert isinstance(resolve_backend(s.replace(backend_url="memory://")), MemoryBackend)
    default = resolve_backend(s.replace(backend_url="smtp://u:p%40ss@mail.example.org:2525"))
    assert isinstance(default, PipelinedSMTPBackend)  # the default engine
    assert (default.target.host, default.target.port, default.target.password) == (
        "mail.example.org", 2525, "p@ss",
    )  # fmt: skip
    url = "smtp://u:p%40ss@mail.example.org:2525?engine=smtplib"
    smtp = resolve_backend(s.replace(backend_url=url))
    assert isinstance(smtp, SMTPBackend)
    assert (smtp.host, smtp.port, smtp.username, smtp.password) == (
        "mail.example.org", 2525, "u", "p@ss",
    )  # fmt: skip
    for backend in (smtp, default):
        assert isinstance(backend, Backend)


def test_unknown_scheme_or_option_fails_early() -> None:
    with pytest.raises(ConfigError, match="unknown scheme 'pigeon'"):
        Settings().replace(backend_url="pigeon://coop")
    s = Settings()
    object.__setattr__(s, "backend_url", "pigeon://coop")  # bypass validation on purpose
    with pytest.raises(ConfigError, match="unknown scheme 'pigeon'"):
        resolve_backend(s)
    with pytest.raises(ConfigError, match="unknown option"):
        resolve_backend(Settings(backend_url="smtp://h?starttsl=true"))
    with pytest.raises(ConfigError, match="already TLS"):
        resolve_backend(Settings(backend_url="smtps://h?starttls=true"))


def test_a_scheme_registered_in_process_is_accepted_by_the_settings(tmp_path: Path) -> None:
    """One list of scheme names: the built-ins are the registry's own keys, and a backend
    registered with ``register_backend`` is a valid ``backend_url`` from then on."""
    from weekly_mailer.config import load_settings
    from weekly_mailer.config_checks import BACKEND_SCHEMES
    from weekly_mailer.delivery.backends import REGISTRY, available_schemes, register_backend

    assert tuple(REGISTRY) == BACKEND_SCHEMES
    config = tmp_path / "weekly_mailer.toml"
    config.write_text('backend_url = "carrier://loft"\n')
    with pytest.raises(ConfigError, match="unknown scheme 'carrier'"):
        load_settings(config, environ={})
    register_backend("carrier", lambda settings: MemoryBackend())
    try:
        settings = load_settings(config, environ={})
        assert "carrier" in available_schemes()
        assert isinstance(resolve_backend(settings), MemoryBackend)
    finally:
        REGISTRY.pop("carrier")
        from weekly_mailer import config_checks

        config_checks._REGISTERED.discard("carrier")


def test_file_urls_relative_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert folder_from_url("file://./outbox") == Path("outbox")
    assert folder_from_url("file:///var/spool/out") == Path("/var/spool/out")
    monkeypatch.chdir(tmp_path)
    with resolve_backend(Settings(backend_url="file://./outbox")) as backend:
        backend.send(envelope("a@example.org", 1))
        backend.send(envelope("a@example.org", 1))  # a retry replaces the same file
        backend.send(envelope("b@example.org", 2))
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == ["m1.a@example.org@test.eml", "m2.b@example.org@test.eml"]
    assert (tmp_path / "outbox" / files[0]).read_bytes() == envelope("a@example.org", 1).data


def test_file_backend_unwritable_folder_is_an_outage(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(BackendUnavailableError, match="cannot create the outbox folder"):
        FileBackend(tmp_path / "blocker" / "out").send(envelope("a@example.org"))


def test_console_backend_prints_the_message() -> None:
    out = io.StringIO()
    ConsoleBackend(out).send(envelope("a@example.org"))
    assert "RCPT TO:<a@example.org>" in out.getvalue()
    assert "Subject: Hi 0\n" in out.getvalue()


def smtp_settings(server: SMTPServer, **kw: Any) -> Settings:
    """The smtplib engine (``?engine=smtplib``); the pipelined one has test_pipelined.py."""
    return Settings(backend_url=f"{server.url}?engine=smtplib", smtp_timeout=5, **kw)


def test_smtp_delivers_bytes_and_reuses_a_pool_of_connections() -> None:
    with SMTPServer() as server:
        backend = resolve_backend(smtp_settings(server, concurrency=3, max_per_connection=10))
        assert isinstance(backend, SMTPBackend)
        threads = [
            threading.Thread(
                target=lambda k=k: [
                    backend.send(envelope(f"u{k}.{i}@example.org", i)) for i in range(20)
                ]  # fmt: skip
            )
            for k in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        backend.close()
        got = server.received()
    assert len(got) == 60
    assert got[0].data.count(b"\r\n..leading dot") == 0  # dot-stuffing undone by the server
    assert b"\r\n.leading dot\r\n" in got[0].data
    # 60 messages, at most 10 per connection, at most 3 at once: 6 connections, not 60.
    assert 6 <= backend.connections_opened <= 9


def test_smtp_replies_map_to_our_failures_and_the_connection_survives() -> None:
    faults = Faults(
        refuse={"gone@example.org"},
        custom=lambda rcpt: {
            "later@example.org": "451 4.3.0 Try again later",
            "full@example.org": "452 4.2.2 Mailbox full",
            "policy@example.org": "554 5.7.1 Rejected by policy",
            "busy@example.org": "441 4.4.1 Busy",
        }.get(rcpt),
    )
    with SMTPServer(faults) as server:
        with resolve_backend(smtp_settings(server, concurrency=1)) as backend:
            assert isinstance(backend, SMTPBackend)
            with pytest.raises(PermanentFailure, match="550 5.1.1 No such user") as perm:
                backend.send(envelope("gone@example.org"))
            assert perm.value.code == 550
            with pytest.raises(TemporaryFailure) as temp:
                backend.send(envelope("later@example.org"))
            assert temp.value.code == 451 and temp.value.throttle
            with pytest.raises(TemporaryFailure) as temp:
                backend.send(envelope("busy@example.org"))
            assert temp.value.code == 441 and not temp.value.throttle
            with pytest.raises(PermanentFailure):
                backend.send(envelope("policy@example.org"))
            backend.send(envelope("fine@example.org"))
            assert backend.connections_opened == 1
        assert [m.rcpt_tos for m in server.received()] == [["fine@example.org"]]


def test_smtp_reconnects_after_a_drop() -> None:
    faults = Faults(custom=lambda rcpt: "drop" if rcpt.startswith("drop") else None)
    with SMTPServer(faults) as server:
        with resolve_backend(smtp_settings(server, concurrency=1)) as backend:
            assert isinstance(backend, SMTPBackend)
            backend.send(envelope("a@example.org"))
            with pytest.raises(TemporaryFailure, match="connection lost|421"):
                backend.send(envelope("drop@example.org"))
            backend.send(envelope("b@example.org"))
            assert backend.connections_opened == 2
        assert [m.rcpt_tos[0] for m in server.received()] == ["a@example.org", "b@example.org"]


def test_smtp_replaces_a_pooled_connection_closed_while_idle() -> None:
    with SMTPServer() as server:
        with resolve_backend(smtp_settings(server, concurrency=1)) as backend:
            assert isinstance(backend, SMTPBackend)
            backend.send(envelope("a@example.org"))
            backend._idle[0].smtp.sock.close()  # type: ignore[union-attr]  # as if timed out
            backend.send(envelope("b@example.org"))
        assert len(server.received()) == 2


def test_smtp_unreachable_server_is_an_outage() -> None:
    import socket

    with socket.socket() as held:  # bound, never listening: refused, and nobody else can take it
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        backend = resolve_backend(Settings(backend_url=f"smtp://127.0.0.1:{port}?engine=smtplib"))
        with pytest.raises(BackendUnavailableError, match="cannot open an SMTP connection"):
            backend.send(envelope("a@example.org"))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return d / "cert.pem", d / "key.pem"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
    from aiosmtpd.smtp import AuthResult

    ok = auth.login == b"mailer" and auth.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


def test_smtp_starttls_and_auth(tls_files: tuple[Path, Path]) -> None:
    import ssl

    cert, key = tls_files
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = SMTPServer(
        tls_context=ctx, require_starttls=True, authenticator=_authenticator,
        auth_require_tls=True,
    )  # fmt: skip
    with server:
        base = f"smtp://mailer:s3cret@127.0.0.1:{server.port}?starttls=true&cafile={cert}&engine=smtplib"
        with resolve_backend(Settings(backend_url=base)) as backend:
            backend.send(envelope("a@example.org"))
        assert len(server.received()) == 1
        wrong = base.replace("s3cret", "nope")
        with resolve_backend(Settings(backend_url=wrong)) as backend:
            with pytest.raises(BackendUnavailableError, match="refused the login: 535"):
                backend.send(envelope("a@example.org"))
        untrusted = f"smtp://mailer:s3cret@127.0.0.1:{server.port}?starttls=true&engine=smtplib"
        with resolve_backend(Settings(backend_url=untrusted)) as backend:
            with pytest.raises(BackendUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
                backend.send(envelope("a@example.org"))


def test_smtps_implicit_tls(tls_files: tuple[Path, Path]) -> None:
    import ssl

    cert, key = tls_files
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    with SMTPServer(ssl_context=ctx) as server:
        url = f"smtps://127.0.0.1:{server.port}?cafile={cert}"
        with resolve_backend(Settings(backend_url=url)) as backend:
            backend.send(envelope("a@example.org"))
        assert len(server.received()) == 1


def test_token_bucket_paces_and_zero_is_unlimited() -> None:
    now = [0.0]
    bucket = TokenBucket(10, burst=2, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, pytest.approx(0.1),
                                                    pytest.approx(0.2)]  # fmt: skip
    now[0] = 1.0
    assert bucket.reserve() == 0.0
    assert TokenBucket(0).reserve() == 0.0
    started = time.monotonic()
    real = TokenBucket(50)
    for _ in range(11):
        assert real.acquire()
    assert time.monotonic() - started >= 0.18  # 10 waits of 1/50 s


def test_throttle_gate_pauses_everyone_and_stop_interrupts() -> None:
    now = [0.0]
    gate = ThrottleGate(clock=lambda: now[0])
    gate.pause(0.2)
    gate.pause(0.1)  # overlapping pauses do not add up
    assert gate.pauses == 1 and gate.remaining() == pytest.approx(0.2)
    # A stop cuts the wait short: the wait returns False while the gate is still closed
    # (an order, not a time: the gate's clock never moves here).
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    assert gate.wait(stop) is False
    assert stop.is_set() and gate.remaining() == pytest.approx(0.2)


PLUGIN = """
from weekly_mailer.delivery.backends.base import SendResult

class Tiny:
    def __init__(self, path):
        self.path = path
    def send(self, envelope):
        with open(self.path, "a") as fh:
            fh.write(envelope.recipient + "\\n")
        return SendResult(250, "tiny ok")
    def close(self):
        pass
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.close()

def factory(settings):
    return Tiny(settings.backend_url.split("://", 1)[1])
"""


def test_third_party_backend_from_an_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "tiny_backend-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "tiny_backend.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[weekly_mailer.backends]\ntiny = tiny_backend:factory\n"
    )
    log = tmp_path / "tiny.log"
    code = (
        "from weekly_mailer.config import load_settings\n"
        "from weekly_mailer.delivery import resolve_backend, available_schemes\n"
        "from weekly_mailer.delivery.backends.base import Envelope\n"
        "s = load_settings()\n"
        "assert 'tiny' in available_schemes()\n"
        "with resolve_backend(s) as b:\n"
        "    print(b.send(Envelope('n@example.org', 'r@example.org', b'x')).reply)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site), WEEKLY_MAILER_BACKEND_URL=f"tiny://{log}")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "tiny ok"
    assert log.read_text() == "r@example.org\n"
