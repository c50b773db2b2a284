"""A new user's first hour (issue #23): what they meet, each point as they would see it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli
from tests.support.smtpd import SMTPServer


def test_the_confirmation_email_keeps_quoted_printable_lines_within_76(workdir: Path) -> None:
    assert run_cli("init", cwd=workdir).returncode == 0
    with SMTPServer() as server:
        env = {"WEEKLY_MAILER_BACKEND_URL": server.url}
        added = run_cli("subscribers", "add", "long.address.for.wrapping@example.org",
                        cwd=workdir, env=env)  # fmt: skip
        assert added.returncode == 0, added.stderr
        (got,) = server.received()
    head, _, body = got.data.partition(b"\r\n\r\n")
    assert b"quoted-printable" in body
    lines = body.split(b"\r\n")
    assert max(len(line) for line in lines) <= 76, max(lines, key=len)  # RFC 2045 6.7
    text = got.message.get_body(("plain",))
    assert text is not None and "/confirm/" in text.get_content()  # the link survives wrapping
