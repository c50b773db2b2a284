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


def test_keygen_ed25519_key_verifies_a_dual_signed_message(workdir: Path) -> None:
    from weekly_mailer.config import load_settings
    from weekly_mailer.delivery.dkim import DkimSigner

    rsa = run_cli("dkim", "keygen", "--domain", "news.example.net", "--selector", "r1", cwd=workdir)
    assert rsa.returncode == 0, rsa.stderr
    result = run_cli(
        "dkim", "keygen", "--type", "ed25519", "--domain", "news.example.net", cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    records = {}
    for out in (rsa.stdout, result.stdout):
        for name, value in re.findall(r"^(\S+\._domainkey\.\S+) IN TXT (.+)$", out, re.M):
            records[name.encode()] = "".join(re.findall(r'"([^"]*)"', value)).encode()
    ed_name = b"mail-ed25519._domainkey.news.example.net."
    assert re.fullmatch(rb"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", records[ed_name])
    key_file = workdir / "dkim_ed25519.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert b"BEGIN PRIVATE KEY" in key_file.read_bytes()
    assert 'dkim_ed25519_selector = "mail-ed25519"' in result.stdout
    assert f'dkim_ed25519_key_file = "{key_file.resolve()}"' in result.stdout

    settings = load_settings(
        environ={
            "WEEKLY_MAILER_DKIM_DOMAIN": "news.example.net",
            "WEEKLY_MAILER_DKIM_SELECTOR": "r1",
            "WEEKLY_MAILER_DKIM_KEY_FILE": str(workdir / "dkim_private.pem"),
            "WEEKLY_MAILER_DKIM_ED25519_SELECTOR": "mail-ed25519",
            "WEEKLY_MAILER_DKIM_ED25519_KEY_FILE": str(key_file),
        }
    )
    signer = DkimSigner.from_settings(settings)
    assert signer is not None
    message = b"From: News <news@news.example.net>\r\nTo: ann@example.org\r\n\r\nBody\r\n"
    signed = signer.sign(message)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return records[name]

    def verifies(data: bytes, idx: int) -> bool:
        try:
            return bool(dkim.DKIM(data).verify(idx=idx, dnsfunc=dns))
        except dkim.DKIMException:  # a body hash mismatch is raised, not returned
            return False

    assert verifies(signed, 0) and verifies(signed, 1)
    tampered = signed.replace(b"Body", b"Evil")
    assert not verifies(tampered, 0) and not verifies(tampered, 1)

    doctor = run_cli(
        "doctor",
        cwd=workdir,
        env={
            "WEEKLY_MAILER_DKIM_DOMAIN": "news.example.net",
            "WEEKLY_MAILER_DKIM_ED25519_SELECTOR": "mail-ed25519",
            "WEEKLY_MAILER_DKIM_ED25519_KEY_FILE": str(key_file),
        },
    )
    assert "DKIM signing (Ed25519) as mail-ed25519._domainkey.news.example.net" in doctor.stdout
    assert "DKIM needs" not in doctor.stdout
