"""DKIM signatures per second: ours (OpenSSL through ``cryptography``) against dkimpy.

Signs the seed article's personalised message (the real size, relaxed/relaxed, the same header
set) with RSA-2048 both ways, and with Ed25519 ours; prints signatures/s and the ratio.

    .venv/bin/python benchmarks/bench_dkim.py [--n 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seeds" / "000_495e8089be07fca3.txt"
sys.path.insert(0, str(ROOT))

from weekly_mailer.articles import load_article  # noqa: E402
from weekly_mailer.compose import (  # noqa: E402
    DKIM_HEADERS,
    Recipient,
    compose_issue,
    make_message_id,
    personalise,
)
from weekly_mailer.config import Settings  # noqa: E402
from weekly_mailer.delivery.dkim import DkimSigner  # noqa: E402

WEEK = dt.date(2026, 11, 25)


def message() -> bytes:
    settings = Settings(secret_key="bench", postal_address="1 Example Street")
    source = SEED if SEED.exists() else ROOT / "tests" / "data" / "article.md"
    issue = compose_issue(load_article(str(source)), settings, send_week=WEEK, issue_id=1)
    who = Recipient(1, "reader@example.org", "Reader One", "https://x.example/u/1")
    now = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)
    return personalise(issue.skeleton, who, message_id=make_message_id(settings, WEEK, 1), date=now)


def rate(n: int, sign: Callable[[], object]) -> float:
    sign()  # warm
    started = time.perf_counter()
    for _ in range(n):
        sign()
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300, help="signatures per measurement")
    args = parser.parse_args()
    data = message()
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    ed_pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ours = DkimSigner(domain="example.org", selector="s", private_key=pem)
    ours_ed = DkimSigner(domain="example.org", ed25519_selector="e", ed25519_key=ed_pem)
    ours_n = rate(args.n, lambda: ours.sign(data))
    ed_n = rate(args.n, lambda: ours_ed.sign(data))
    theirs_n = rate(
        max(10, args.n // 20),
        lambda: dkim.sign(
            data,
            b"s",
            b"example.org",
            pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(DKIM_HEADERS),
        ),
    )
    print(f"message: {len(data)} bytes")
    print(f"floor (dkimpy, RSA-2048): {theirs_n:9.0f} signatures/s")
    print(f"ours (OpenSSL, RSA-2048): {ours_n:9.0f} signatures/s  ratio {ours_n / theirs_n:6.1f}x")
    print(f"ours (OpenSSL, Ed25519):  {ed_n:9.0f} signatures/s  ratio {ed_n / theirs_n:6.1f}x")


if __name__ == "__main__":
    main()
