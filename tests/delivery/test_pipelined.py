"""The pipelined SMTP engine against real aiosmtpd servers: PIPELINING when offered, lock-step
when not, per-message failures that leave the connection going, RFC 5321 timeouts, the in-doubt
drop after the dot, STARTTLS with AUTH, and the one failure table shared with smtplib's engine."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.smtpd import Faults
from tests.support.smtpd_pipelining import PipeliningServer
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends import resolve_backend
from weekly_mailer.delivery.backends.base import (
    BackendBusyError,
    BackendUnavailableError,
    Envelope,
    SendResult,
)
from weekly_mailer.delivery.backends.pipelined import PipelinedSMTPBackend
from weekly_mailer.delivery.backends.smtp import SMTPBackend
from weekly_mailer.delivery.backends.smtp_session import wire_data
from weekly_mailer.errors import ConfigError, PermanentFailure, TemporaryFailure

BODY = b"From: news@example.org\r\nSubject: Hi\r\n\r\nHello\r\n.starts with a dot\r\nbye\r\n"


def envelopes(n: int, body: bytes = BODY) -> list[Envelope]:
    return [Envelope("news@example.org", f"r{i}@example.org", body) for i in range(n)]


def backend(server: PipeliningServer, **settings: Any) -> PipelinedSMTPBackend:
    url = settings.pop("url", server.url)
    built = resolve_backend(Settings(backend_url=f"{url}?engine=pipelined", **settings))
    assert isinstance(built, PipelinedSMTPBackend)
    return built


def test_the_engine_is_chosen_by_the_url_and_nothing_else() -> None:
    plain = resolve_backend(Settings(backend_url="smtp://127.0.0.1:2525?engine=smtplib"))
    assert isinstance(plain, SMTPBackend)
    piped = resolve_backend(Settings(backend_url="smtps://h.example:465?engine=pipelined"))
    assert isinstance(piped, PipelinedSMTPBackend) and piped.target.implicit_tls
    default = resolve_backend(Settings(backend_url="smtp://127.0.0.1:2525"))
    assert isinstance(default, PipelinedSMTPBackend)  # the default since the worker uses it
    with pytest.raises(ConfigError, match="engine='fast' is not one of smtplib, pipelined"):
        resolve_backend(Settings(backend_url="smtp://127.0.0.1:2525?engine=fast"))
    settings = Settings(
        backend_url="smtp://127.0.0.1:2525?engine=pipelined",
        smtp_command_timeout=7,
        smtp_data_init_timeout=8,
        smtp_data_timeout=9,
    )
    timed = resolve_backend(settings)
    assert isinstance(timed, PipelinedSMTPBackend)
    assert (timed.command_timeout, timed.data_init_timeout, timed.data_timeout) == (7, 8, 9)
    assert (Settings().smtp_command_timeout, Settings().smtp_data_timeout) == (300, 600)
    assert Settings().smtp_data_init_timeout == 120


def test_wire_data_is_crlf_and_dot_stuffed() -> None:
    assert wire_data(b"a\nb\r\n.c\r.d\r\n") == b"a\r\nb\r\n..c\r\n..d\r\n.\r\n"
    assert wire_data(b".x") == b"..x\r\n.\r\n"
    assert wire_data(b"plain\r\n") == b"plain\r\n.\r\n"


@given(st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b" "]), max_size=40))
def test_wire_data_matches_the_line_by_line_rule(pieces: list[bytes]) -> None:
    """Its quick scans decide as the plain rule does: every line end CRLF, a leading dot
    doubled, the payload ended by CRLF and the dot line."""
    data = b"".join(pieces)
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    expected = b"".join(
        (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines
    )
    assert wire_data(data) == expected + b".\r\n"


def test_pipelining_sends_mail_rcpt_data_in_one_write() -> None:
    """MAIL, RCPT and DATA go in one write; from the second message on they follow the previous
    message's final dot in its write (RFC 2920 §3.1): one write a message."""
    with PipeliningServer(pipelining=True) as server:
        with backend(server, concurrency=1) as b:
            results = b.send_batch(envelopes(5))
        assert all(isinstance(r, SendResult) for r in results), results
        reads = server.command_reads()
        assert len(reads) == 5
        assert all(b"MAIL FROM" in r and b"RCPT TO" in r and b"DATA\r\n" in r for r in reads)
        assert server.chained_reads() == 4
    got = server.received()
    assert sorted(m.rcpt_tos[0] for m in got) == [f"r{i}@example.org" for i in range(5)]
    assert got[0].data == BODY  # dot-stuffing undone by the server: the bytes arrive intact


def test_a_wire_safe_message_goes_as_it_is_and_the_others_are_made_so() -> None:
    """``Envelope.wire_safe`` (the composer checked it): the bytes go out as they are; without
    it the engine converts line ends and stuffs dots. Both arrive as they were composed."""
    safe = b"From: news@example.org\r\nSubject: Hi\r\n\r\nHello\r\nbye\r\n"
    unsafe = b"From: news@example.org\nSubject: Hi\n\n.dot\nbye\n"
    with PipeliningServer(pipelining=True) as server:
        with backend(server, concurrency=1) as b:
            results = b.send_batch(
                [
                    Envelope("news@example.org", "a@example.org", safe, wire_safe=True),
                    Envelope("news@example.org", "b@example.org", unsafe),
                ]
            )
        assert all(isinstance(r, SendResult) for r in results), results
        with server.lock:
            wire = b"".join(data for _, data in server.reads)
    assert b"\r\n\r\n" + safe.partition(b"\r\n\r\n")[2] + b".\r\n" in wire
    assert b"\r\n\r\n..dot\r\nbye\r\n.\r\n" in wire
    got = {m.rcpt_tos[0]: m.data for m in server.received()}
    assert got == {"a@example.org": safe, "b@example.org": unsafe.replace(b"\n", b"\r\n")}


def test_without_pipelining_commands_go_one_at_a_time() -> None:
    with PipeliningServer(pipelining=False) as server:
        with backend(server, concurrency=1) as b:
            results = b.send_batch(envelopes(4, BODY.replace(b"\r\n", b"\n")))
        assert all(isinstance(r, SendResult) for r in results), results
        reads = server.command_reads()
        assert len(reads) == 12  # MAIL, RCPT, DATA for each message, each its own read
        assert all(r.count(b"\r\n") == 1 for r in reads), reads
    assert [m.data for m in server.received()] == [BODY] * 4  # bare LFs went out as CRLF


def test_a_refused_rcpt_fails_that_message_alone_on_the_same_connection() -> None:
    with PipeliningServer(Faults(refuse={"r2@example.org"}), pipelining=True) as server:
        with backend(server, concurrency=1) as b:
            results = b.send_batch(envelopes(5))
            assert b.connections_opened == 1
        assert isinstance(results[2], PermanentFailure)
        assert str(results[2]) == "550 5.1.1 No such user here"
        assert [isinstance(r, SendResult) for r in results] == [True, True, False, True, True]
        assert server.connections() == 1
        assert any(r.startswith(b"RSET") for r in server.command_reads())
    assert len(server.received()) == 4


def test_deferrals_and_per_connection_cap() -> None:
    faults = Faults(custom=lambda rcpt: "451 4.3.0 Try again later" if rcpt == "r1@example.org"
                    else None)  # fmt: skip
    with PipeliningServer(faults) as server:
        with backend(server, concurrency=1, max_per_connection=2) as b:
            results = b.send_batch(envelopes(6))
            assert b.connections_opened == 3
        deferred = results[1]
        assert isinstance(deferred, TemporaryFailure)
        assert (deferred.code, deferred.throttle, str(deferred)) == (
            451, True, "451 4.3.0 Try again later"
        )  # fmt: skip
        assert sum(isinstance(r, SendResult) for r in results) == 5
    assert len(server.received()) == 5


def test_421_throttles_and_replaces_the_connection() -> None:
    faults = Faults(custom=lambda rcpt: "421 4.7.0 Slow down" if rcpt == "r1@example.org"
                    else None)  # fmt: skip
    with PipeliningServer(faults) as server:
        with backend(server, concurrency=1) as b:
            results = b.send_batch(envelopes(4))
            assert b.connections_opened == 2
            throttled = results[1]
            assert isinstance(throttled, TemporaryFailure)
            assert (throttled.code, throttled.throttle) == (421, True)
            assert [isinstance(r, SendResult) for r in results] == [True, False, True, True]
            server.mail_reply = "421 4.7.0 Too many, closing"
            again = b.send_batch(envelopes(2))
        assert all(isinstance(r, TemporaryFailure) and r.throttle for r in again), again
        assert "421 4.7.0 Too many, closing" in str(again[0])
    assert len(server.received()) == 3


def test_a_slow_reply_to_the_dot_is_not_a_failure() -> None:
    with PipeliningServer(slow_data=2.0) as server:
        with backend(server, smtp_data_timeout=5) as b:
            assert isinstance(b.send(envelopes(1)[0]), SendResult)
    assert len(server.received()) == 1


def test_no_reply_to_the_dot_in_time_is_in_doubt_not_sent() -> None:
    with PipeliningServer(slow_data=1.5) as server:
        with backend(server, smtp_data_timeout=0.5) as b:
            with pytest.raises(TemporaryFailure, match="delivery in doubt"):
                b.send(envelopes(1)[0])
        with server.lock:  # the server had the whole message: that is why it is "in doubt"
            assert any(b"bye\r\n.\r\n" in data for _, data in server.reads)


def test_a_drop_after_the_dot_is_a_temporary_failure_and_the_rest_go_on() -> None:
    faults = Faults(custom=lambda rcpt: "drop" if rcpt == "r1@example.org" else None)
    with PipeliningServer(faults) as server:
        with backend(server, concurrency=1) as b:
            results = b.send_batch(envelopes(4))
            assert b.connections_opened == 2
        assert isinstance(results[1], TemporaryFailure)
        assert "connection lost after the message was sent" in str(results[1])
        assert "delivery in doubt" in str(results[1])
        assert [isinstance(r, SendResult) for r in results] == [True, False, True, True]
        # r2's MAIL, RCPT and DATA went out with r1's final dot, unanswered: r2 was tried again
        # on the new connection, and arrived once.
        with server.lock:
            assert any(b"\r\n.\r\nMAIL FROM:<news@example.org>" in d for _, d in server.reads)
    assert sorted(m.rcpt_tos[0] for m in server.received()) == [
        "r0@example.org", "r2@example.org", "r3@example.org"
    ]  # fmt: skip


def test_a_refused_sender_stops_the_batch() -> None:
    with PipeliningServer() as server:
        server.mail_reply = "550 5.7.1 Sender not allowed"
        with backend(server, concurrency=2) as b:
            results = b.send_batch(envelopes(6))
            with pytest.raises(BackendUnavailableError, match="refused the sender"):
                b.send(envelopes(1)[0])
        assert all(isinstance(r, BackendUnavailableError) for r in results), results
        assert "550 5.7.1 Sender not allowed" in str(results[0])
    assert server.received() == []


@pytest.fixture
def greeting_server() -> Iterator[tuple[int, list[bytes]]]:
    """A raw TCP server that greets with whatever the test puts in the list."""
    greeting = [b"421 4.7.0 Too many connections, try later\r\n"]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(greeting[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], greeting
    stop.set()
    thread.join()
    listener.close()


def test_greetings_and_unreachable_servers_map_like_smtplib(
    greeting_server: tuple[int, list[bytes]],
) -> None:
    port, greeting = greeting_server
    url = f"smtp://127.0.0.1:{port}?engine=pipelined"
    with resolve_backend(Settings(backend_url=url)) as b:
        with pytest.raises(BackendBusyError, match="is busy: 421 4.7.0 Too many") as busy:
            b.send(envelopes(1)[0])
        assert busy.value.code == 421 and busy.value.throttle
        greeting[0] = b"554 5.3.2 No service\r\n"
        results = b.send_batch(envelopes(2))
    assert all(isinstance(r, BackendUnavailableError) for r in results)
    assert "refused the connection: 554 5.3.2 No service" in str(results[0])
    with socket.socket() as held:  # bound, never listening: refused
        held.bind(("127.0.0.1", 0))
        closed = f"smtp://127.0.0.1:{held.getsockname()[1]}?engine=pipelined"
        with resolve_backend(Settings(backend_url=closed)) as b:
            with pytest.raises(BackendUnavailableError, match="cannot open an SMTP connection"):
                b.send(envelopes(1)[0])


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


def test_starttls_with_auth(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = PipeliningServer(
        tls_context=ctx, require_starttls=True, authenticator=_authenticator,
        auth_require_tls=True,
    )  # fmt: skip
    with server:
        base = f"smtp://mailer:s3cret@127.0.0.1:{server.port}?starttls=true&cafile={cert}"
        with resolve_backend(Settings(backend_url=base + "&engine=pipelined")) as b:
            results = b.send_batch(envelopes(3))
        assert all(isinstance(r, SendResult) for r in results), results
        assert len(server.received()) == 3
        wrong = base.replace("s3cret", "nope") + "&engine=pipelined"
        with resolve_backend(Settings(backend_url=wrong)) as b:
            with pytest.raises(BackendUnavailableError, match="refused the login: 535"):
                b.send(envelopes(1)[0])
        untrusted = f"smtp://mailer:s3cret@127.0.0.1:{server.port}?starttls=true&engine=pipelined"
        with resolve_backend(Settings(backend_url=untrusted)) as b:
            with pytest.raises(BackendUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
                b.send(envelopes(1)[0])


def test_batches_spread_over_connections_and_reuse_them() -> None:
    with PipeliningServer() as server:
        with backend(server, concurrency=4) as b:
            first = b.send_batch(envelopes(40))
            second = b.send_batch(envelopes(40))
            assert b.connections_opened == 4
        assert all(isinstance(r, SendResult) for r in first + second)
        assert server.connections() == 4
    assert len(server.received()) == 80
