"""VERP envelope senders (tokens.VerpCodec) and the keys that drive VERP and the block pause."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from tests.conftest import init_in, run_cli
from weekly_mailer.config import Settings, load_settings
from weekly_mailer.delivery.envelopes import Envelopes, verp_codec
from weekly_mailer.errors import ConfigError
from weekly_mailer.tokens import VerpCodec

SECRET = "a-secret-key-for-verp-tests-0123456789"


def test_an_address_names_its_delivery_and_verifies() -> None:
    codec = VerpCodec(SECRET, "bounces@News.Example.org")
    address = codec.address(1234)
    local, _, domain = address.partition("@")
    assert domain == "news.example.org"
    assert local.startswith("bounces+1234-") and len(local) == len("bounces+1234-") + 10
    assert codec.read(address) == (1234, True)
    assert codec.read(address.upper()) == (1234, True)  # an MTA that folds case
    assert codec.read(f"<{address}>") == (1234, True)


def test_a_tampered_or_foreign_address_does_not_verify() -> None:
    codec = VerpCodec(SECRET, "bounces@example.org")
    address = codec.address(7)
    mac = address.split("-")[1].split("@")[0]
    assert codec.read(address.replace(mac, mac[::-1])) == (7, False)
    assert codec.read(address.replace("+7-", "+8-")) == (8, False)  # another delivery's id
    assert VerpCodec("another-secret", "bounces@example.org").read(address) == (7, False)
    assert codec.read("bounces@example.org") is None  # the plain bounce address
    assert codec.read(address.replace("example.org", "example.net")) is None
    assert codec.read(address.replace("bounces+", "other+")) is None
    assert codec.read("bounces+x1-abc@example.org") is None


def test_the_mac_is_bound_to_its_purpose() -> None:
    """A mac made with the bare secret_key (as another purpose's signature would be) fails."""
    codec = VerpCodec(SECRET, "bounces@example.org")
    raw = hmac.new(SECRET.encode(), b"7", hashlib.sha256).digest()
    naive = base64.b32encode(raw).decode()[:10].lower()
    assert codec.read(f"bounces+7-{naive}@example.org") == (7, False)
    assert codec.read(codec.address(7)) == (7, True)


def test_verp_is_on_with_a_bounce_address_and_off_on_request(settings: Settings) -> None:
    assert verp_codec(settings) is None  # no bounce_address: mail goes from from_address
    on = settings.replace(bounce_address="Bounces <bounces@example.org>")
    assert Envelopes.from_settings(on).seal("a@b.example", b"x", "<m>", delivery_id=5).sender == (
        VerpCodec(on.secret_key, "bounces@example.org").address(5)
    )
    off = on.replace(verp=False)
    assert Envelopes.from_settings(off).seal("a@b.example", b"x", "<m>", delivery_id=5).sender == (
        "bounces@example.org"
    )


@pytest.mark.parametrize(("raw", "value"), [("false", False), ("0", False), ("Yes", True)])
def test_verp_from_the_environment(workdir: Path, raw: str, value: bool) -> None:
    assert load_settings(environ={"WEEKLY_MAILER_VERP": raw}).verp is value


def test_verp_from_a_file(workdir: Path) -> None:
    (workdir / "weekly_mailer.toml").write_text("verp = false\n")
    assert load_settings(environ={}).verp is False
    (workdir / "weekly_mailer.toml").write_text('verp = "sometimes"\n')
    with pytest.raises(ConfigError, match="verp: expected true or false, got 'sometimes'"):
        load_settings(environ={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEEKLY_MAILER_VERP": "perhaps"}, "Error: verp: expected true or false, got 'perhaps'"),
        (
            {"WEEKLY_MAILER_BOUNCE_TRUST": "all"},
            "Error: bounce_trust: 'all' is not one of signed, any",
        ),
        ({"WEEKLY_MAILER_BLOCK_PAUSE_THRESHOLD": "0"}, "Error: block_pause_threshold: must be"),
        (
            {"WEEKLY_MAILER_BLOCK_PAUSE_MINUTES": "99999"},
            "Error: block_pause_minutes: '99999' is too large (at most 10080)",
        ),
        (
            {"WEEKLY_MAILER_BLOCK_PAUSE_WINDOW_MINUTES": "1e9"},
            "Error: block_pause_window_minutes: '1e9' is too large (at most 1440)",
        ),
    ],
)
def test_bad_values_are_one_line_with_exit_2(
    workdir: Path, env: dict[str, str], message: str
) -> None:
    result = run_cli("subscribers", "count", cwd=workdir, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_doctor_warns_while_bounce_trust_is_any(workdir: Path) -> None:
    init_in(workdir)
    signed = run_cli("doctor", cwd=workdir)
    believing = run_cli("doctor", cwd=workdir, env={"WEEKLY_MAILER_BOUNCE_TRUST": "any"})
    assert "bounce_trust" not in signed.stdout + signed.stderr
    assert 'bounce_trust = "any": any report believed' in believing.stdout
