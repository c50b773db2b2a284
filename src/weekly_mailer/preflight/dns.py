"""DNS for the pre-flight: dnspython, through the system's resolver or ``dns_resolver``.

Answers are cached for their TTL (dnspython's :class:`dns.resolver.Cache`, one per resolver
address, shared by every check in the process, so the daemon's weekly gate and a ``doctor``
run ask each name once while its answer lives). A name that does not exist, or has no record of
the type, is an empty answer; a resolver that does not answer raises :class:`DnsUnavailable`,
which every check turns into a ``warn`` (never a crash); one that timed out once is not asked
again by the same :class:`Lookup` (one run of the checks waits for it once).
"""

from __future__ import annotations

import functools
import threading

import dns.exception
import dns.name
import dns.rdata
import dns.rdatatype
import dns.resolver

from weekly_mailer.config import parse_dns_resolver
from weekly_mailer.errors import WeeklyMailerError

TIMEOUT = 3.0  # seconds for one question, all tries included


class DnsUnavailable(WeeklyMailerError):
    """The resolver did not answer (timeout, refused, no server)."""


class Lookup:
    """TXT, MX and address questions; see the module docstring."""

    def __init__(self, server: str = "", *, timeout: float = TIMEOUT) -> None:
        self.server = server
        try:
            if server:
                host, port = parse_dns_resolver(server)
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = [host]
                resolver.port = port
            else:
                resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration as exc:
            raise DnsUnavailable("no DNS resolver is configured (set dns_resolver)") from exc
        resolver.lifetime = timeout
        resolver.timeout = timeout
        resolver.cache = _cache(server)
        self._resolver = resolver
        self._silent = ""  # once the resolver did not answer, the next questions fail at once

    @property
    def where(self) -> str:
        return self.server or "the system's resolver"

    def _ask(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        if self._silent:
            raise DnsUnavailable(self._silent)
        try:
            answer = self._resolver.resolve(dns.name.from_text(name), rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.NoNameservers as exc:
            raise DnsUnavailable(f"{self.where} gave no usable answer for {name} {rdtype}") from exc
        except dns.exception.Timeout as exc:
            self._silent = f"{self.where} did not answer"
            raise DnsUnavailable(f"{self.where} did not answer for {name} {rdtype}") from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsUnavailable(f"asking {self.where} for {name} {rdtype}: {exc}") from exc
        return list(answer)

    def txt(self, name: str) -> list[str]:
        """Each TXT record at ``name``, its strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        out = []
        for rdata in self._ask(name, "TXT"):
            strings = getattr(rdata, "strings", ())
            out.append(b"".join(strings).decode("utf-8", "replace"))
        return out

    def mx(self, name: str) -> list[tuple[int, str]]:
        """``(preference, exchange)`` of each MX record at ``name``."""
        out = []
        for rdata in self._ask(name, "MX"):
            exchange = str(getattr(rdata, "exchange", "")).rstrip(".")
            out.append((int(getattr(rdata, "preference", 0)), exchange))
        return sorted(out)

    def addresses(self, name: str) -> list[str]:
        """The A and AAAA addresses of ``name``."""
        return [str(r) for kind in ("A", "AAAA") for r in self._ask(name, kind)]


_CACHES: dict[str, dns.resolver.Cache] = {}
_CACHES_LOCK = threading.Lock()


def _cache(server: str) -> dns.resolver.Cache:
    with _CACHES_LOCK:
        cache = _CACHES.get(server)
        if cache is None:
            cache = _CACHES[server] = dns.resolver.Cache()
        return cache


@functools.lru_cache(maxsize=1)
def public_suffixes() -> object:
    """The public suffix list as the ``publicsuffixlist`` package ships it (no network)."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def organisational_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label (the domain itself when it is one)."""
    from publicsuffixlist import PublicSuffixList

    psl = public_suffixes()
    assert isinstance(psl, PublicSuffixList)
    domain = domain.lower().rstrip(".")
    return psl.privatesuffix(domain) or domain


__all__ = ["DnsUnavailable", "Lookup", "organisational_domain"]
