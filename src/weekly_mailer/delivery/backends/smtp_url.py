"""``smtp://`` and ``smtps://`` URLs, parsed once for both SMTP engines.

``smtp://user:pass@host:587?starttls=true`` or ``smtps://user:pass@host:465``. Query options:
``starttls`` (true/false), ``verify`` (false accepts any certificate: test servers only),
``cafile`` (extra CA bundle) and ``engine``: ``pipelined``, the default, the asyncio client with
RFC 2920 PIPELINING (:mod:`.pipelined`), or ``smtplib``, the older one message per thread
engine (:mod:`.smtp`).
"""

from __future__ import annotations

import dataclasses
import ssl
from urllib.parse import parse_qsl, unquote, urlsplit

from weekly_mailer.errors import ConfigError

OPTIONS = frozenset({"starttls", "verify", "cafile", "engine"})
ENGINES = ("smtplib", "pipelined")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SmtpTarget:
    """Where and how to connect: host, port, TLS mode and context, login, engine."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str = ""
    password: str = ""
    ssl_context: ssl.SSLContext | None = None
    engine: str = "pipelined"


def flag(key: str, value: str) -> bool:
    """A URL option's boolean value; ``ConfigError`` for anything but true/false words."""
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"backend_url: {key}={value!r} is not true or false")


def parse_smtp_url(url: str) -> SmtpTarget:
    """The target of an ``smtp://`` / ``smtps://`` URL; ``ConfigError`` naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(f"backend_url: {url!r} is not an smtp:// or smtps:// URL")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - OPTIONS
    if unknown:
        raise ConfigError(f"backend_url: unknown option(s) {', '.join(sorted(unknown))}")
    engine = options.get("engine", "pipelined")
    if engine not in ENGINES:
        raise ConfigError(f"backend_url: engine={engine!r} is not one of {', '.join(ENGINES)}")
    implicit = parts.scheme == "smtps"
    starttls = flag("starttls", options.get("starttls", "false"))
    if implicit and starttls:
        raise ConfigError("backend_url: smtps:// is already TLS; drop ?starttls=true")
    context: ssl.SSLContext | None = None
    if implicit or starttls:
        context = ssl.create_default_context(cafile=options.get("cafile") or None)
        if not flag("verify", options.get("verify", "true")):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    try:
        port = parts.port or (465 if implicit else 25)
    except ValueError as exc:
        raise ConfigError(f"backend_url: {url!r} has a bad port") from exc
    return SmtpTarget(
        host=parts.hostname,
        port=port,
        implicit_tls=implicit,
        starttls=starttls,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        ssl_context=context,
        engine=engine,
    )
