"""SPF (RFC 7208): the envelope domain's record, parsed, and its DNS-querying terms counted.

A small term counter over our own :class:`~.dns.Lookup` rather than a library: ``pyspf``
evaluates a record for one connecting IP (we want the record's shape, for any IP) and has not
been released since 2020; ``checkdmarc`` does the count but asks DNS its own way, with its own
resolver and timeouts. What is counted is RFC 7208 4.6.4's list: ``include``, ``a``, ``mx``,
``ptr``, ``exists`` and the ``redirect`` modifier, each once, and recursively those of every
``include``d or ``redirect``ed record; more than 10 is a permanent error at every receiver.
"""

from __future__ import annotations

import dataclasses
import re

from weekly_mailer.preflight.dns import Lookup

LIMIT = 10
COUNTED = frozenset({"include", "a", "mx", "ptr", "exists", "redirect"})
MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$")


class SpfError(Exception):
    """A permanent error (RFC 7208 2.6.7): what is wrong, in words."""


@dataclasses.dataclass(slots=True)
class SpfShape:
    """A domain's record and what evaluating it may cost."""

    record: str
    lookups: int = 0
    all_qualifier: str = ""  # of the top record's ``all`` ("" when it has none)


def spf_records(lookup: Lookup, domain: str) -> list[str]:
    """The ``v=spf1`` TXT records at ``domain`` (RFC 7208 4.5: exactly one is valid)."""
    return [t for t in lookup.txt(domain) if re.match(r"(?i)^v=spf1(\s|$)", t.strip())]


def shape(lookup: Lookup, domain: str) -> SpfShape:
    """The record at ``domain`` and its count of DNS-querying terms; ``SpfError`` when it is
    missing, doubled or malformed, an include has no record, or the count passes ``LIMIT``
    (the count stops there). ``DnsUnavailable`` passes through."""
    records = spf_records(lookup, domain)
    if not records:
        raise SpfError(f"there is no SPF record at {domain}")
    if len(records) > 1:
        raise SpfError(f"{domain} has {len(records)} SPF records (receivers accept exactly one)")
    out = SpfShape(record=records[0].strip())
    out.lookups = _count(lookup, domain, out.record, seen={domain.lower()}, top=out)
    return out


def _count(
    lookup: Lookup, domain: str, record: str, *, seen: set[str], top: SpfShape | None
) -> int:
    total = 0
    redirect = ""
    has_all = False
    for term in record.split()[1:]:
        modifier = _MODIFIER.match(term)
        if modifier and modifier.group(1).lower() not in MECHANISMS:
            name = modifier.group(1).lower()
            if name == "redirect":
                if redirect:
                    raise SpfError(f"{domain}: two redirect= modifiers")
                redirect = modifier.group(2)
            continue  # exp= and unknown modifiers cost nothing (RFC 7208 6)
        qualifier = term[0] if term[0] in "+-~?" else "+"
        body = term[1:] if term[0] in "+-~?" else term
        name, sep, target = _split(body)
        name = name.lower()
        if name not in MECHANISMS:
            raise SpfError(f"{domain}: unknown term {term!r}")
        if name == "all":
            has_all = True
            if top is not None:
                top.all_qualifier = qualifier
        if name in COUNTED:
            total += 1
            if total > LIMIT:
                return total
        if name == "include":
            if not target or sep != ":":
                raise SpfError(f"{domain}: include needs a domain ({term!r})")
            total += _follow(lookup, target, seen, why=f"include:{target}")
            if total > LIMIT:
                return total
    if redirect and not has_all:
        total += 1
        total += _follow(lookup, redirect, seen, why=f"redirect={redirect}", top=top)
    return total


def _split(body: str) -> tuple[str, str, str]:
    for i, ch in enumerate(body):
        if ch in ":/":
            return body[:i], ch, body[i + 1 :]
    return body, "", ""


def _follow(
    lookup: Lookup, target: str, seen: set[str], *, why: str, top: SpfShape | None = None
) -> int:
    if "%" in target:
        return 0  # a macro is expanded per message: its target cannot be followed here
    key = target.lower().rstrip(".")
    if key in seen:
        raise SpfError(f"{why} loops back to a record already included")
    seen.add(key)
    records = spf_records(lookup, key)
    if len(records) != 1:
        found = "no" if not records else f"{len(records)}"
        raise SpfError(f"{why}: {key} has {found} SPF records")
    return _count(lookup, key, records[0].strip(), seen=seen, top=top)
