"""DKIM at OpenSSL speed: dkimpy (the reference verifier) accepts our RSA, Ed25519 and dual
signatures on personalised issue messages and rejects them once a signed header changes."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from weekly_mailer.articles import load_article
from weekly_mailer.compose import (
    Recipient,
    compose_issue,
    make_message_id,
    personalise,
    unsubscribe_url,
)
from weekly_mailer.config import Settings
from weekly_mailer.delivery.dkim import (
    DkimSigner,
    public_record,
    relaxed_body,
    relaxed_header,
)
from weekly_mailer.errors import ConfigError

WEEK = dt.date(2026, 11, 25)
WHEN = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)
DOMAIN = "example.org"

_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_ED = ed25519.Ed25519PrivateKey.generate()


def pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


DNS = {
    b"wm-rsa._domainkey.example.org.": public_record(_RSA).encode(),
    b"wm-ed._domainkey.example.org.": public_record(_ED).encode(),
}


def dns(name: bytes, timeout: int = 5) -> bytes:
    return DNS[name]


def verify_all(data: bytes) -> list[bool]:
    """dkimpy's verdict on every DKIM-Signature header, top to bottom."""
    count = len(re.findall(rb"^DKIM-Signature:", data, re.M))
    return [verify_one(data, i) for i in range(count)]


def verify_one(data: bytes, idx: int) -> bool:
    try:
        return bool(dkim.DKIM(data).verify(idx=idx, dnsfunc=dns))
    except dkim.DKIMException:  # e.g. a body hash mismatch is raised, not returned
        return False


@pytest.fixture
def messages(seed_path: Path, settings: Settings) -> list[bytes]:
    settings = settings.replace(unsubscribe_mailto="leave@example.org")
    issue = compose_issue(load_article(str(seed_path)), settings, send_week=WEEK, issue_id=3)
    out = []
    for n, (addr, name) in enumerate(
        [("ana@example.net", "Ana Okafor"), ("zoe@example.net", "Zoë “Z” O’Brien"), ("x@y.org", "")]
    ):
        who = Recipient(n, addr, name, unsubscribe_url(settings, n, addr))
        message_id = make_message_id(settings, WEEK, n)
        out.append(personalise(issue.skeleton, who, message_id=message_id, date=WHEN))
    return out


def rsa_signer(**kw: object) -> DkimSigner:
    return DkimSigner(domain=DOMAIN, selector="wm-rsa", private_key=pem(_RSA), **kw)  # type: ignore[arg-type]


def tamper_unsubscribe(data: bytes) -> bytes:
    altered = re.sub(rb"(List-Unsubscribe: <https?://)", rb"\1evil.example/", data, count=1)
    assert altered != data
    return altered


@pytest.mark.parametrize("kind", ["rsa", "ed25519", "dual"])
def test_signatures_verify_with_dkimpy_and_break_when_list_unsubscribe_changes(
    messages: list[bytes], kind: str
) -> None:
    keys: dict[str, object] = {}
    if kind in ("rsa", "dual"):
        keys |= {"selector": "wm-rsa", "private_key": pem(_RSA)}
    if kind in ("ed25519", "dual"):
        keys |= {"ed25519_selector": "wm-ed", "ed25519_key": pem(_ED)}
    signer = DkimSigner(domain=DOMAIN, **keys)  # type: ignore[arg-type]
    for data in messages:
        signed = signer.sign(data)
        assert signed.endswith(data)
        algorithms = re.findall(rb"a=([a-z0-9-]+);", signed.split(b"\r\n\r\n")[0])
        expected = {"rsa": [b"rsa-sha256"], "ed25519": [b"ed25519-sha256"]}.get(
            kind, [b"rsa-sha256", b"ed25519-sha256"]
        )
        assert algorithms == expected
        assert verify_all(signed) == [True] * len(expected)
        assert verify_all(tamper_unsubscribe(signed)) == [False] * len(expected)
        added = signed[: -len(data)]  # the signature headers alone
        assert max(len(line) for line in added.split(b"\r\n")) <= 78
        assert b"\n" not in added.replace(b"\r\n", b"")


def test_a_body_change_fails_the_body_hash(messages: list[bytes]) -> None:
    signed = rsa_signer().sign(messages[0])
    assert verify_all(signed) == [True]
    head, body = signed.split(b"\r\n\r\n", 1)
    assert b"Cambodia" in body
    assert verify_all(head + b"\r\n\r\n" + body.replace(b"Cambodia", b"Cambodja", 1)) == [False]


def test_h_oversigns_and_signs_what_is_present_and_t_is_the_clock(messages: list[bytes]) -> None:
    signed = rsa_signer(clock=lambda: WHEN).sign(messages[0])
    head = signed[: -len(messages[0])].replace(b"\r\n ", b"")
    h = re.search(rb"h=([^;]+);", head)
    assert h is not None
    names = [n.strip() for n in h.group(1).split(b":")]
    # Each oversigned header once more than the message has it (RFC 6376 8.15) ...
    for name in (b"from", b"to", b"subject", b"date", b"message-id", b"content-type",
                 b"list-unsubscribe", b"list-unsubscribe-post"):  # fmt: skip
        assert names.count(name) == 2, (name, names)
    # ... and the others once, where the message has them.
    for name in (b"mime-version", b"list-id", b"precedence"):
        assert names.count(name) == 1, (name, names)
    assert b"auto-submitted" not in names
    assert re.search(rb"t=(\d+);", head)[1] == str(int(WHEN.timestamp())).encode()  # type: ignore[index]
    untimed = rsa_signer(timestamp=False).sign(messages[0])
    assert b" t=" not in untimed[: -len(messages[0])]
    assert verify_all(untimed) == [True]


@pytest.mark.parametrize(
    ("body", "canonical"),
    [
        (b"", b""),
        (b"\r\n", b""),
        (b"\r\n\r\n\r\n", b""),
        (b"x", b"x\r\n"),
        (b"a  \t b \r\n\r\n", b"a b\r\n"),
        (b" lead\r\n\r\nmid \r\nend\t\r\n\r\n", b" lead\r\n\r\nmid\r\nend\r\n"),
    ],
)
def test_relaxed_body(body: bytes, canonical: bytes) -> None:
    assert relaxed_body(body) == canonical
    message = b"From: a@example.org\r\n\r\n" + body
    assert verify_all(rsa_signer().sign(message)) == [True]


def test_relaxed_header_unfolds_and_trims() -> None:
    assert relaxed_header(b"SubJect", b"  Hello \r\n\t folded  there \t") == (
        b"subject:Hello folded there\r\n"
    )


def test_folded_headers_and_bare_lf_sign_as_sent() -> None:
    folded = (
        b"From: A <a@example.org>\r\nTo:  b@example.net  \r\nSubject: one\r\n  two\r\n\tthree \r\n"
        b"List-Unsubscribe: <https://example.org/u/1>,\r\n <mailto:u@example.org>\r\n\r\nHi\r\n"
    )
    assert verify_all(rsa_signer().sign(folded)) == [True]
    lf = folded.replace(b"\r\n", b"\n")
    signed = rsa_signer().sign(lf)
    assert verify_all(signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")) == [True]


_HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from(" \t"),
    max_size=60,
).filter(lambda s: s.strip() != "")
_FOLDED = st.lists(_HEADER_TEXT, min_size=1, max_size=3).map(lambda parts: "\r\n ".join(parts))
_BODY_LINE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from(" \t"),
    max_size=80,
)


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=_FOLDED,
    to=_HEADER_TEXT,
    unsubscribe=_FOLDED,
    lines=st.lists(_BODY_LINE, max_size=8),
    trailing=st.sampled_from(["", "\r\n", "\r\n\r\n", " \t\r\n"]),
)
def test_any_headers_and_body_verify_with_dkimpy(
    subject: str, to: str, unsubscribe: str, lines: list[str], trailing: str
) -> None:
    head = (
        f"From: News <news@example.org>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Thu, 26 Nov 2026 02:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n"
        f"List-Unsubscribe: {unsubscribe}\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    )
    body = "\r\n".join(lines) + trailing
    message = (head + "\r\n" + body).encode("ascii")
    signed = rsa_signer().sign(message)
    assert verify_all(signed) == [True]


def test_from_settings_rules(tmp_path: Path, settings: Settings) -> None:
    rsa_file, ed_file = tmp_path / "rsa.pem", tmp_path / "ed.pem"
    rsa_file.write_bytes(pem(_RSA))
    ed_file.write_bytes(pem(_ED))
    assert DkimSigner.from_settings(settings) is None
    ed_only = settings.replace(
        dkim_domain=DOMAIN, dkim_ed25519_selector="wm-ed", dkim_ed25519_key_file=str(ed_file)
    )
    signer = DkimSigner.from_settings(ed_only)
    assert signer is not None
    assert verify_all(signer.sign(b"From: a@example.org\r\n\r\nx\r\n")) == [True]
    both = ed_only.replace(dkim_selector="wm-rsa", dkim_key_file=str(rsa_file))
    dual = DkimSigner.from_settings(both)
    assert dual is not None
    assert verify_all(dual.sign(b"From: a@example.org\r\n\r\nx\r\n")) == [True, True]

    cases = {
        "dkim_domain, dkim_selector and dkim_key_file must be set together": settings.replace(
            dkim_domain=DOMAIN
        ),
        "dkim_domain, dkim_ed25519_selector and dkim_ed25519_key_file must be set together": (
            settings.replace(dkim_ed25519_key_file=str(ed_file))
        ),
        "dkim_ed25519_selector must differ from dkim_selector": both.replace(
            dkim_ed25519_selector="wm-rsa"
        ),
        "dkim_ed25519_key_file: cannot read": ed_only.replace(
            dkim_ed25519_key_file=str(tmp_path / "none.pem")
        ),
        "is not a PEM private key": ed_only.replace(dkim_ed25519_key_file=__file__),
        "DKIM signing failed: dkim_key_file is not an RSA key": both.replace(
            dkim_key_file=str(ed_file)
        ),
    }
    for message, bad in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)) as exc:
            DkimSigner.from_settings(bad)
        assert "\n" not in str(exc.value)


def test_dkimpy_seed_files_load(tmp_path: Path, settings: Settings) -> None:
    import base64

    seed = _ED.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    (tmp_path / "ed.key").write_bytes(base64.b64encode(seed) + b"\n")
    signer = DkimSigner.from_settings(
        settings.replace(
            dkim_domain=DOMAIN,
            dkim_ed25519_selector="wm-ed",
            dkim_ed25519_key_file=str(tmp_path / "ed.key"),
        )
    )
    assert signer is not None
    assert verify_all(signer.sign(b"From: a@example.org\r\n\r\nx\r\n")) == [True]


def _markdown_copy(settings: Settings) -> bytes:
    article = load_article(str(Path(__file__).parents[1] / "data" / "article.md"))
    issue = compose_issue(article, settings, send_week=dt.date(2026, 11, 25))
    who = Recipient(3, "cy@example.net", "Cy", unsubscribe_url(settings, 3, "cy@example.net"))
    when = dt.datetime(2026, 11, 26, 2, tzinfo=dt.UTC)
    return issue.message_for(
        who, message_id=make_message_id(settings, dt.date(2026, 11, 25), 3), date=when
    )


def _with_header(data: bytes, line: bytes) -> bytes:
    """A header line prepended to the message's own headers (after the signatures), as a
    relay or an attacker would add it."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    at = next(i for i, x in enumerate(lines) if i and not x.startswith((b" ", b"\t", b"DKIM")))
    return b"\r\n".join(lines[:at] + [line] + lines[at:]) + sep + body


@pytest.mark.parametrize("kind", ["issue", "confirmation"])
def test_an_added_or_changed_header_breaks_the_signature(settings: Settings, kind: str) -> None:
    from weekly_mailer.compose.message import build_confirmation_message

    data = (
        _markdown_copy(settings)
        if kind == "issue"
        else build_confirmation_message(
            settings, email="cy@example.net", name="", confirm_url="https://x.example/confirm/t"
        )
    )
    signed = rsa_signer().sign(data)
    assert verify_all(signed) == [True]
    for extra in (
        b"From: Someone Else <boss@example.org>",
        b"Subject: Urgent: your account",
        b"Content-Type: text/html",
    ):
        assert verify_all(_with_header(signed, extra)) == [False], extra
    changed = re.sub(
        rb"Content-Type: multipart/alternative", b"Content-Type: multipart/mixed", signed, count=1
    )
    assert changed != signed
    assert verify_all(changed) == [False]
