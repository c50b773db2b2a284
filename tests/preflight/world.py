"""A small mail world for the pre-flight tests: DKIM keys, and zones served by a real nsd in
which each domain has everything right but one thing (``CASES``)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.support.nsd import zone_text
from weekly_mailer.config import Settings
from weekly_mailer.delivery.dkim import public_record

RSA_SELECTOR, ED_SELECTOR = "wm1", "wm2"
CASES = (
    "ok",
    "dkim-other",
    "dkim-missing",
    "spf-missing",
    "spf-eleven",
    "spf-plusall",
    "dmarc-missing",
    "unaligned",
    "nomx",
)


def write_keys(folder: Path) -> dict[str, Path]:
    """Our RSA and Ed25519 keys, and an RSA key of another pair, as PEM files."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "other": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }
    out = {}
    for name, key in keys.items():
        path = folder / f"{name}.pem"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        out[name] = path
    return out


def record_of(path: Path) -> str:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return public_record(key)


def zone_for(case: str, keys: dict[str, Path]) -> tuple[str, str]:
    """``(origin, zone text)`` of one case's domain, ``<case>.test``."""
    origin = f"{case}.test"
    rows: list[tuple[str, str, str]] = [("relay", "A", "127.0.0.1")]
    if case != "dkim-missing":
        rsa_key = keys["other" if case == "dkim-other" else "rsa"]
        rows.append((f"{RSA_SELECTOR}._domainkey", "TXT", record_of(rsa_key)))
    rows.append((f"{ED_SELECTOR}._domainkey", "TXT", record_of(keys["ed25519"])))
    spf = {
        "spf-eleven": f"v=spf1 a include:_spf.{origin} -all",
        "spf-plusall": "v=spf1 ip4:127.0.0.1 +all",
    }.get(case, f"v=spf1 ip4:127.0.0.1 include:_spf.{origin} -all")
    if case != "spf-missing":
        rows.append(("bounce", "TXT", spf))
    # 10 more lookups for spf-eleven (1 a + 1 include + 9 a: = 11); 1 for the others.
    terms = " ".join(f"a:h{i}.{origin}" for i in range(9 if case == "spf-eleven" else 1))
    rows.append(("_spf", "TXT", f"v=spf1 {terms} -all"))
    if case != "nomx":
        rows.append(("bounce", "MX", f"10 relay.{origin}."))
    if case != "dmarc-missing":
        rows.append(("_dmarc", "TXT", f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{origin}"))
    return origin, zone_text(origin, rows)


def zones(keys: dict[str, Path]) -> dict[str, str]:
    return dict(zone_for(case, keys) for case in CASES)


def world_settings(base: Settings, case: str, keys: dict[str, Path], resolver: str) -> Settings:
    """Settings sending as ``news@<case>.test``, bounces to ``bounce.<case>.test``, signed with
    both keys by ``<case>.test`` (``unaligned``: by ``ok.test``, whose records are right)."""
    domain = f"{case}.test"
    return base.replace(
        from_address=f"News <news@{domain}>",
        bounce_address=f"bounces@bounce.{domain}",
        dkim_domain="ok.test" if case == "unaligned" else domain,
        dkim_selector=RSA_SELECTOR,
        dkim_key_file=str(keys["rsa"]),
        dkim_ed25519_selector=ED_SELECTOR,
        dkim_ed25519_key_file=str(keys["ed25519"]),
        dns_resolver=resolver,
    )
