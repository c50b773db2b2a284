"""`weekly-mailer dkim keygen` makes a key whose published record verifies a signed message."""

from __future__ import annotations

import re
from pathlib import Path

import dkim

from tests.conftest import run_cli


def test_keygen_key_verifies_a_signature(workdir: Path) -> None:
    result = run_cli(
        "dkim", "keygen", "--domain", "news.example.net", "--selector", "wm1", cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"^wm1\._domainkey\.news\.example\.net\. IN TXT (.+)$", result.stdout, re.M)
    assert match, result.stdout
    strings = re.findall(r'"([^"]*)"', match.group(1))
    assert all(len(part) <= 255 for part in strings)  # DNS's limit for one character-string
    record = "".join(strings)
    assert record.startswith("v=DKIM1; k=rsa; ")
    key = (workdir / "dkim_private.pem").read_bytes()
    assert (workdir / "dkim_private.pem").stat().st_mode & 0o777 == 0o600

    message = (
        b"From: News <news@news.example.net>\r\nTo: ann@example.org\r\nSubject: Hi\r\n"
        b"Date: Wed, 25 Nov 2026 18:00:00 -0800\r\nMessage-ID: <1@news.example.net>\r\n\r\nBody\r\n"
    )
    sig = dkim.sign(message, b"wm1", b"news.example.net", key, include_headers=[b"From", b"To"])

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"wm1._domainkey.news.example.net."
        return record.encode()

    assert dkim.verify(sig + message, dnsfunc=dns)
    assert not dkim.verify(sig + message.replace(b"Body", b"Evil"), dnsfunc=dns)

    again = run_cli("dkim", "keygen", "--domain", "news.example.net", cwd=workdir)
    assert again.returncode == 2
    assert "exists (pass --force to replace it)" in again.stderr
    bad = run_cli(
        "dkim", "keygen", "--key-file", "no/such/dir/k.pem", "--domain", "x.org", cwd=workdir
    )
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        "Error: dkim keygen: folder 'no/such/dir' does not exist",
    )
