"""Hardening for the public site: security headers, CSRF, request size, rate limits, errors.

CSRF is a signed double-submit: the sign-up form carries a timed token signed with
``secret_key``, and a cookie carries the same random nonce, signed separately. A POST passes only
when both signatures hold and the nonces match (constant-time comparison). A third-party page can
neither read nor set our cookie, so it cannot forge the pair.

Links in e-mails (confirm, unsubscribe, re-subscribe) carry a signed, subscriber-bound token
instead: holding the link is the capability, so those forms need no CSRF token, and the RFC 8058
one-click POST must work without cookies anyway.
"""

from __future__ import annotations

import collections
import datetime as dt
import hmac
import ipaddress
import secrets
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, current_app, g, render_template, request
from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer
from werkzeug.exceptions import HTTPException

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

bp = Blueprint("security", __name__)

CSRF_COOKIE = "wm_csrf"
CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE = dt.timedelta(hours=12)

# The site's own pages: our stylesheet, our forms, nothing else; never framed.
SITE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# An archived issue is e-mail HTML: inline styles and remote images, but never a script or form.
ARCHIVE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


class Csrf:
    """Signed double-submit tokens for one secret key."""

    def __init__(self, secret_key: str) -> None:
        self._cookie = URLSafeSerializer(secret_key, salt="weekly_mailer.csrf-cookie")
        self._form = URLSafeTimedSerializer(secret_key, salt="weekly_mailer.csrf-form")

    def _nonce_from_cookie(self, value: str | None) -> str | None:
        if not value or len(value) > 200:
            return None
        try:
            nonce = self._cookie.loads(value)
        except BadSignature:
            return None
        return nonce if isinstance(nonce, str) else None

    def form_token(self) -> str:
        """A token for a form on this response; sets the cookie when the browser has none."""
        nonce = self._nonce_from_cookie(request.cookies.get(CSRF_COOKIE))
        if nonce is None:
            nonce = secrets.token_urlsafe(18)
            g.csrf_cookie = self._cookie.dumps(nonce)
        return self._form.dumps(nonce)

    def cookie_missing(self) -> bool:
        """Whether the request carries no CSRF cookie at all (cookies off, or a form elsewhere)."""
        return not request.cookies.get(CSRF_COOKIE)

    def valid(self) -> bool:
        """Whether this POST carries a form token that matches its cookie."""
        nonce = self._nonce_from_cookie(request.cookies.get(CSRF_COOKIE))
        token = request.form.get(CSRF_FIELD, "")
        if nonce is None or not token or len(token) > 300:
            return False
        try:
            sent = self._form.loads(token, max_age=int(CSRF_MAX_AGE.total_seconds()))
        except BadSignature:
            return False
        return isinstance(sent, str) and hmac.compare_digest(sent, nonce)


class SlidingWindowLimiter:
    """At most ``limit`` hits per key within ``window``; in memory, per process, thread-safe."""

    MAX_KEYS = 50_000

    def __init__(self, limit: int, window: dt.timedelta, clock: Callable[[], dt.datetime]) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[str, collections.deque[dt.datetime]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> bool:
        """Count one hit for ``key``; False when it is over the limit (the hit is not counted)."""
        now = self._clock()
        start = now - self.window
        with self._lock:
            if len(self._hits) >= self.MAX_KEYS:
                self._prune(start)
            hits = self._hits.setdefault(key, collections.deque())
            while hits and hits[0] <= start:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            return True

    def _prune(self, start: dt.datetime) -> None:
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= start]:
            del self._hits[key]
        while len(self._hits) >= self.MAX_KEYS:  # still full: forget the oldest keys
            del self._hits[next(iter(self._hits))]


def client_ip() -> str:
    """The peer address (put a proxy's trusted X-Forwarded-For handling in the WSGI server)."""
    return request.remote_addr or "unknown"


def network_key(ip: str) -> str:
    """What the per-IP limit counts: the address, or its /64 for IPv6 (one host's usual share)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        if not address.is_loopback:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@bp.after_app_request
def _secure_headers(response: Response) -> Response:
    """Security headers on every response, and the CSRF cookie when a form issued one."""
    settings: Settings = current_app.config["WEEKLY_MAILER_SETTINGS"]
    secure_cookie = settings.base_url.startswith("https://")
    headers = response.headers
    headers.setdefault("Content-Security-Policy", SITE_CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "interest-cohort=()")
    if secure_cookie:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.method == "POST" or request.path.startswith(("/confirm/", "/unsubscribe/")):
        headers.setdefault("Cache-Control", "no-store")
    cookie = g.get("csrf_cookie")
    if cookie:
        response.set_cookie(
            CSRF_COOKIE,
            cookie,
            max_age=int(CSRF_MAX_AGE.total_seconds()),
            httponly=True,
            secure=secure_cookie,
            samesite="Lax",
            path="/",
        )
    return response


_ERROR_TEXT = {
    400: ("Bad request", "The request could not be understood."),
    404: ("Not found", "There is nothing at this address."),
    405: ("Not allowed", "This page cannot be used that way."),
    413: ("Too large", "That request was larger than this site accepts."),
    429: ("Too many requests", "Please wait a while and try again."),
    500: ("Something went wrong", "The error has been logged. Please try again later."),
}


def error_page(code: int, *, title: str | None = None, text: str | None = None) -> Response:
    """A plain page for an HTTP error that reveals nothing about why a link was refused."""
    default_title, default_text = _ERROR_TEXT.get(code, ("Error", ""))
    body = render_template(
        "error.html", code=code, title=title or default_title, text=text or default_text
    )
    response = Response(body, status=code, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def invalid_link() -> Response:
    """The one page for a tampered, truncated, foreign or expired link: it says nothing more."""
    return error_page(
        400,
        title="This link is not valid",
        text="It may have expired or been copied incompletely. You can sign up again below.",
    )


@bp.app_errorhandler(HTTPException)
def _on_http_error(exc: HTTPException) -> Response:
    return error_page(exc.code or 500)


def install(app: Flask, settings: Settings) -> None:
    """Security headers, the size limit and plain error pages for every route."""
    app.config["WEEKLY_MAILER_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_request_bytes
    app.register_blueprint(bp)
