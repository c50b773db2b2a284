"""Amazon SNS over https: the signing certificates (fetched only from an allowed host, cached)
and the subscription confirmation (a GET of ``SubscribeURL``, only on such a host).

TLS is verified with the default context, which trusts the system's CAs (or ``SSL_CERT_FILE``,
for a test's own CA). Redirects are never followed: a host that passed the check could
otherwise send us anywhere.
"""

from __future__ import annotations

import ssl
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable

from cryptography import x509

from weekly_mailer.bounces.webhooks.verify import sns_url_allowed

FETCH_TIMEOUT = 10.0
MAX_CERTIFICATE_BYTES = 65536
CACHE_SIZE = 16


class FetchError(Exception):
    """An allowed URL that could not be read (network, TLS, HTTP status): worth a retry."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError for the 3xx


def https_get(url: str, *, limit: int = MAX_CERTIFICATE_BYTES) -> bytes:
    """The body of an https GET (verified TLS, no redirects, at most ``limit`` bytes)."""
    context = ssl.create_default_context()
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), _NoRedirect()
    )
    try:
        with opener.open(url, timeout=FETCH_TIMEOUT) as response:
            body = response.read(limit + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchError(f"{url}: {exc}") from exc
    if len(body) > limit:
        raise FetchError(f"{url}: more than {limit} bytes")
    return bytes(body)


class Certificates:
    """The signing certificates by URL, fetched once each (the last ``CACHE_SIZE`` kept)."""

    def __init__(self, fetch: Callable[[str], bytes] = https_get) -> None:
        self._fetch = fetch
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.fetched = 0  # how many times a certificate was fetched (the cache's misses)

    def get(self, url: str, hosts: Iterable[str]) -> bytes | None:
        """The PEM at ``url``; ``None`` when the URL is not an allowed https one. Raises
        :class:`FetchError` when an allowed URL cannot be read or holds no certificate."""
        if not sns_url_allowed(url, hosts):
            return None
        with self._lock:
            if url in self._cache:
                self._cache.move_to_end(url)
                return self._cache[url]
        pem = self._fetch(url)
        try:
            x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise FetchError(f"{url}: not a PEM certificate") from exc
        with self._lock:
            self.fetched += 1
            self._cache[url] = pem
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return pem


def confirm_subscription(
    url: str, hosts: Iterable[str], fetch: Callable[[str], bytes] = https_get
) -> bool:
    """GET ``SubscribeURL`` when it is an allowed https URL (False otherwise). Raises
    :class:`FetchError` when it cannot be read."""
    if not sns_url_allowed(url, hosts):
        return False
    fetch(url)
    return True
