"""The DNS checks: DKIM keys, SPF of the envelope domain, DMARC and alignment, the bounce
domain's MX. Each returns :class:`~.model.Check` lines; a failure names the record to publish."""

from __future__ import annotations

import base64
import binascii
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from weekly_mailer.compose import envelope_sender
from weekly_mailer.compose.headers import domain_of
from weekly_mailer.delivery.backends.smtp_url import parse_smtp_url
from weekly_mailer.delivery.dkim import load_private_key, public_record
from weekly_mailer.errors import ConfigError
from weekly_mailer.preflight.dns import DnsUnavailable, Lookup, organisational_domain
from weekly_mailer.preflight.model import Check, fail, ok, warn
from weekly_mailer.preflight.spf import LIMIT, SpfError, shape

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def tags(record: str) -> dict[str, str]:
    """``tag=value; tag=value`` (RFC 6376 3.2, RFC 7489 6.3) as a dict, lower-case tag names,
    whitespace inside values dropped (a folded ``p=``)."""
    out: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            out[name.strip().lower()] = "".join(value.split())
    return out


def envelope_domain(settings: Settings) -> str:
    return domain_of(envelope_sender(settings)).lower()


def from_domain(settings: Settings) -> str:
    return domain_of(settings.from_address).lower()


# -- DKIM --------------------------------------------------------------------------------------


def dkim_keys(settings: Settings) -> list[tuple[str, str, PrivateKey]]:
    """``(kind, selector, private key)`` of each configured key; ``ConfigError`` when one cannot
    be read (doctor's own DKIM lines say which)."""
    out: list[tuple[str, str, PrivateKey]] = []
    for kind, selector, path in (
        ("RSA", settings.dkim_selector, settings.dkim_key_file),
        ("Ed25519", settings.dkim_ed25519_selector, settings.dkim_ed25519_key_file),
    ):
        if selector and path:
            where = f"the DKIM key {path!r}"
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise ConfigError(f"{where} cannot be read: {exc.strerror}") from exc
            out.append((kind, selector, load_private_key(data, where=where)))
    return out


def check_dkim(settings: Settings, lookup: Lookup) -> list[Check]:
    """Each selector's TXT record exists, parses, and holds the public half of our key."""
    domain = settings.dkim_domain.lower()
    if not domain:
        return [
            fail(
                "dkim",
                "DKIM: nothing is signed; Gmail and Yahoo require DKIM of bulk senders: run "
                "`weekly-mailer dkim keygen` and set dkim_domain, dkim_selector, dkim_key_file",
            )
        ]
    try:
        keys = dkim_keys(settings)
    except ConfigError as exc:
        return [fail("dkim", f"DKIM: {exc}")]
    return [_one_key(lookup, domain, kind, selector, key) for kind, selector, key in keys]


def _one_key(lookup: Lookup, domain: str, kind: str, selector: str, key: PrivateKey) -> Check:
    name = f"{selector}._domainkey.{domain}"
    wanted = public_record(key)
    publish = f'publish TXT at {name}: "{wanted}"'
    try:
        records = [r for r in lookup.txt(name) if "p=" in r]
    except DnsUnavailable as exc:
        return warn("dkim", f"DKIM ({kind}) {name}: cannot ask DNS ({exc})")
    if not records:
        return fail("dkim", f"DKIM ({kind}): no key record at {name}; {publish}")
    if len(records) > 1:
        return fail("dkim", f"DKIM ({kind}): {len(records)} key records at {name}; keep one: "
                    f"{publish}")  # fmt: skip
    found = tags(records[0])
    problem = _key_problem(found, key)
    if problem:
        return fail("dkim", f"DKIM ({kind}) {name}: {problem}; {publish}")
    return ok("dkim", f"DKIM ({kind}) {name} publishes our public key")


def _key_problem(found: dict[str, str], key: PrivateKey) -> str:
    if found.get("v", "DKIM1") != "DKIM1":
        return f"v={found['v']} is not DKIM1"
    kind = found.get("k", "rsa").lower()
    if not found.get("p"):
        return "the key is revoked (empty p=)"
    try:
        data = base64.b64decode(found["p"], validate=True)
    except (binascii.Error, ValueError):
        return "p= is not base64"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        if kind != "ed25519":
            return f"k={kind}, but our key is Ed25519"
        ours = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return "" if data == ours else "the published key is not the one of our private key"
    if kind != "rsa":
        return f"k={kind}, but our key is RSA"
    try:
        published = serialization.load_der_public_key(data)
    except (ValueError, TypeError):
        return "p= is not an RSA public key"
    if not isinstance(published, rsa.RSAPublicKey) or (
        published.public_numbers() != key.public_key().public_numbers()
    ):
        return "the published key is not the one of our private key"
    return ""


# -- SPF ---------------------------------------------------------------------------------------


def relay_address(settings: Settings) -> str:
    """The relay's IPv4 address for a suggested SPF term (``<your relay's address>`` if unknown)."""
    try:
        host = parse_smtp_url(settings.backend_url).host
        return socket.gethostbyname(host)
    except (ConfigError, OSError):
        return "<your relay's address>"


def check_spf(settings: Settings, lookup: Lookup) -> Check:
    domain = envelope_domain(settings)
    suggested = f'"v=spf1 ip4:{relay_address(settings)} -all"'
    try:
        spf = shape(lookup, domain)
    except DnsUnavailable as exc:
        return warn("spf", f"SPF of {domain}: cannot ask DNS ({exc})")
    except SpfError as exc:
        if str(exc).startswith("there is no SPF record"):
            return fail("spf", f"SPF: {exc}; publish TXT at {domain}: {suggested} (with your "
                        "relay's include: if it names one)")  # fmt: skip
        return fail("spf", f"SPF of {domain}: {exc}; publish one TXT record at {domain}, "
                    f"like {suggested}")  # fmt: skip
    if spf.lookups > LIMIT:
        return fail(
            "spf",
            f"SPF of {domain} needs more than {LIMIT} DNS lookups ({spf.lookups} counted: "
            "include, a, mx, ptr, exists, redirect; RFC 7208 4.6.4): receivers answer permerror; "
            f"flatten it into ip4:/ip6: terms and publish TXT at {domain}: {suggested}",
        )
    if spf.all_qualifier == "+":
        return fail(
            "spf",
            f"SPF of {domain} ends in +all: anyone may send as you; publish TXT at {domain}: "
            f'"{_with_fail_all(spf.record)}"',
        )
    if spf.all_qualifier in ("?", ""):
        return warn("spf", f"SPF of {domain} ({spf.record!r}) does not end in -all or ~all")
    return ok("spf", f"SPF of {domain}: {spf.record!r} ({spf.lookups} of {LIMIT} lookups)")


def _with_fail_all(record: str) -> str:
    terms = [t for t in record.split() if t.lower().lstrip("+-~?") != "all"]
    return " ".join([*terms, "-all"])


# -- DMARC -------------------------------------------------------------------------------------


def aligned(domain: str, other: str, mode: str) -> bool:
    """RFC 7489 3.1: strict is the same name, relaxed the same organisational domain."""
    domain, other = domain.lower().rstrip("."), other.lower().rstrip(".")
    if mode == "s":
        return domain == other
    return organisational_domain(domain) == organisational_domain(other)


def check_dmarc(settings: Settings, lookup: Lookup) -> Check:
    """The record at ``_dmarc.<From domain>`` (or its organisational domain), valid, and the DKIM
    ``d=`` and the envelope domain aligned with the From domain as ``adkim``/``aspf`` say."""
    domain = from_domain(settings)
    org = organisational_domain(domain)
    publish = f'publish TXT at _dmarc.{org}: "v=DMARC1; p=none; rua=mailto:dmarc@{org}"'
    try:
        where, records = f"_dmarc.{domain}", _dmarc_records(lookup, f"_dmarc.{domain}")
        if not records and org != domain:
            where, records = f"_dmarc.{org}", _dmarc_records(lookup, f"_dmarc.{org}")
    except DnsUnavailable as exc:
        return warn("dmarc", f"DMARC of {domain}: cannot ask DNS ({exc})")
    if not records:
        return fail("dmarc", f"DMARC: no record at _dmarc.{domain} or _dmarc.{org}; {publish}")
    if len(records) > 1:
        return fail("dmarc", f"DMARC: {len(records)} records at {where}; keep one: {publish}")
    found = tags(records[0])
    policy = found.get("sp" if where != f"_dmarc.{domain}" and "sp" in found else "p", "")
    if policy.lower() not in ("none", "quarantine", "reject"):
        return fail("dmarc", f"DMARC at {where}: p={policy!r} is not none, quarantine or reject; "
                    f"{publish}")  # fmt: skip
    adkim, aspf = found.get("adkim", "r").lower(), found.get("aspf", "r").lower()
    if adkim not in ("r", "s") or aspf not in ("r", "s"):
        return fail("dmarc", f"DMARC at {where}: adkim/aspf must be r or s; {publish}")
    mode = {"r": "relaxed", "s": "strict"}
    d = settings.dkim_domain.lower()
    if d and not aligned(d, domain, adkim):
        return fail(
            "dmarc",
            f"DMARC: DKIM d={d} is not aligned with the From domain {domain} "
            f"(adkim={adkim}, {mode[adkim]}): set dkim_domain to {domain if adkim == 's' else org}"
            " (or a name under it) and publish its key there",
        )
    envelope = envelope_domain(settings)
    spf_aligned = aligned(envelope, domain, aspf)
    if not d and not spf_aligned:
        return fail(
            "dmarc",
            f"DMARC: neither DKIM nor the envelope domain {envelope} is aligned with {domain}; "
            f"set dkim_domain to {org} (or bounce_address under {org})",
        )
    note = "" if spf_aligned else f"; the envelope domain {envelope} is not aligned (aspf={aspf})"
    level = ok if spf_aligned else warn
    return level("dmarc", f"DMARC at {where}: p={policy.lower()}, DKIM d={d or '-'} aligned "
                 f"({mode[adkim]}){note}")  # fmt: skip


def _dmarc_records(lookup: Lookup, name: str) -> list[str]:
    return [t for t in lookup.txt(name) if t.strip().lower().startswith("v=dmarc1")]


# -- the bounce domain -------------------------------------------------------------------------


def check_bounce_domain(settings: Settings, lookup: Lookup) -> Check:
    """Bounces can come back: an MX at the envelope domain, or an address (RFC 5321 5.1)."""
    domain = envelope_domain(settings)
    try:
        mx = lookup.mx(domain)
        if mx and all(host in ("", ".") for _p, host in mx):
            return fail("bounce", f"bounces: {domain} publishes a null MX (it accepts no mail); "
                        f"publish MX at {domain}: \"10 <your inbound mail host>\"")  # fmt: skip
        if mx:
            return ok("bounce", f"bounces to {domain} go to {mx[0][1]} (MX)")
        addresses = lookup.addresses(domain)
    except DnsUnavailable as exc:
        return warn("bounce", f"bounces to {domain}: cannot ask DNS ({exc})")
    if addresses:
        return ok("bounce", f"bounces to {domain} go to {addresses[0]} (no MX; its address, "
                  "RFC 5321 5.1)")  # fmt: skip
    return fail(
        "bounce",
        f"bounces: {domain} has no MX and no address, so bounces cannot come back; publish MX at "
        f'{domain}: "10 <your inbound mail host>" (or set bounce_address to a mailbox that '
        "receives mail)",
    )
