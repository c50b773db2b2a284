"""The checks of the text-valued configuration keys (URLs, addresses, the schedule, the time
zone, the log level, the metrics address), one function per kind: :data:`CHECKS` maps each
key to its check, which raises a :class:`ConfigError` naming the key. ``config`` runs them;
``config_numbers`` does the same for the numeric keys.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from weekly_mailer.config_mailbox import check_bounce_mailbox, check_folder
from weekly_mailer.errors import ConfigError

# The backend schemes: the one list of names. ``delivery.backends`` maps each to its factory
# (``REGISTRY``), ``register_backend`` adds to it (``register_scheme``), and third-party ones
# come through the ``weekly_mailer.backends`` entry points; ``backend_url`` accepts them all.
BACKEND_SCHEMES = ("smtp", "smtps", "file", "console", "memory")
_REGISTERED: set[str] = set()
ENTRY_POINT_GROUP = "weekly_mailer.backends"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def register_scheme(scheme: str) -> None:
    """A backend scheme registered in this process (``delivery.backends.register_backend``)."""
    _REGISTERED.add(scheme)


def known_schemes() -> list[str]:
    """Every backend scheme this installation knows: built in, registered, or from entry
    points."""
    from importlib.metadata import entry_points

    names = set(BACKEND_SCHEMES) | _REGISTERED
    names |= {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)


def _check_url(key: str, value: str, schemes: tuple[str, ...] | None = None) -> None:
    parts = urlsplit(value)
    if not parts.scheme:
        raise ConfigError(f"{key}: {value!r} is not a URL (it has no scheme)")
    if schemes is not None and parts.scheme not in schemes:
        raise ConfigError(
            f"{key}: unknown scheme {parts.scheme!r} in {value!r} "
            f"(expected one of: {', '.join(schemes)})"
        )


def _check_database_url(key: str, value: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise ConfigError(f"{key}: {value!r} is not a database URL") from exc
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"{key}: unsupported database {url.get_backend_name()!r} (use sqlite or postgresql)"
        )


def _check_backend_url(key: str, value: str) -> None:
    parts = urlsplit(value)
    _check_url(key, value, tuple(known_schemes()))
    if parts.scheme in ("smtp", "smtps") and not parts.hostname:
        raise ConfigError(f"{key}: {value!r} names no SMTP host")


def _check_http_url(key: str, value: str) -> None:
    """An absolute http(s) URL with a host, of printable ASCII without spaces (it goes in links)."""
    _check_url(key, value, ("http", "https"))
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ConfigError(f"{key}: {value!r} contains a space or control character")
    if not value.isascii():
        raise ConfigError(f"{key}: {value!r} has non-ASCII characters (use the xn-- form)")
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"{key}: {value!r} has an invalid port") from exc
    if not parts.hostname:
        raise ConfigError(f"{key}: {value!r} has no host")
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: {value!r} must not have a query or fragment")


def _check_timezone(key: str, value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{key}: unknown timezone {value!r}") from exc


_SCHEDULE_RE = re.compile(
    r"^\s*([a-z]{3})[a-z]*\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$", re.IGNORECASE
)


def parse_schedule(value: str) -> tuple[int, int, int]:
    """Parse ``'wed 18:00'`` into ``(weekday, hour, minute)`` with Monday = 0."""
    return parse_schedule_seconds(value)[:3]


def parse_schedule_seconds(value: str) -> tuple[int, int, int, int]:
    """Parse ``'wed 18:00'`` or ``'wed 18:00:30'`` into ``(weekday, hour, minute, second)``."""
    m = _SCHEDULE_RE.match(value)
    if not m or m.group(1).lower() not in DAYS:
        raise ConfigError(f"schedule: {value!r} is not like 'wed 18:00'")
    hour, minute, second = int(m.group(2)), int(m.group(3)), int(m.group(4) or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ConfigError(f"schedule: {value!r} is not a valid time of day")
    return DAYS.index(m.group(1).lower()), hour, minute, second


def _check_schedule(key: str, value: str) -> None:
    parse_schedule(value)


def _check_address(key: str, value: str) -> None:
    from email.headerregistry import Address  # noqa: F401
    from email.utils import parseaddr

    if "\r" in value or "\n" in value:
        raise ConfigError(f"{key}: must be a single line")
    _name, addr = parseaddr(value)
    if not addr or "@" not in addr:
        raise ConfigError(f"{key}: {value!r} is not an e-mail address")
    if not addr.isascii():
        raise ConfigError(
            f"{key}: {addr!r} has non-ASCII characters (write the domain in its xn-- form)"
        )


def _check_optional_address(key: str, value: str) -> None:
    if value:
        _check_address(key, value)


def _check_single_line(key: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ConfigError(f"{key}: must be a single line")


def _check_log_level(key: str, value: str) -> None:
    if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{key}: {value!r} is not one of DEBUG, INFO, WARNING, ERROR")


_HOST_PORT_RE = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$"
)


def split_host_port(key: str, value: str) -> tuple[str, int]:
    """``'127.0.0.1:9108'`` or ``'[::1]:9108'`` as ``(host, port)``; else a ConfigError."""
    m = _HOST_PORT_RE.match(value.strip())
    if not m:
        raise ConfigError(f"{key}: {value!r} is not host:port (for example 127.0.0.1:9108)")
    port = int(m.group("port"))
    if not 1 <= port <= 65535:
        raise ConfigError(f"{key}: {value!r} has no TCP port (1-65535)")
    return m.group("v6") or m.group("host"), port


def _check_metrics_address(key: str, value: str) -> None:
    if value:
        split_host_port(key, value)



def parse_dns_resolver(value: str) -> tuple[str, int]:
    """``dns_resolver``: ``'127.0.0.1'``, ``'127.0.0.1:5353'`` or ``'[::1]:53'`` as
    ``(address, port)``; a ``ConfigError`` naming the key otherwise (an IP address: the resolver
    is what turns names into addresses)."""
    import ipaddress

    host, port_text = value.strip(), ""
    if host.startswith("["):
        inner, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"dns_resolver: {value!r} is not host[:port]")
        host, port_text = inner, rest[1:]
    elif host.count(":") == 1:
        host, port_text = host.split(":")
    if port_text and (not port_text.isdigit() or not 0 < int(port_text) < 65536):
        raise ConfigError(f"dns_resolver: {value!r} has a bad port")
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ConfigError(f"dns_resolver: {value!r} is not an IP address[:port]") from exc
    return host, int(port_text or 53)


def _check_dns_resolver(key: str, value: str) -> None:
    if value:
        parse_dns_resolver(value)


def _check_helo_name(key: str, value: str) -> None:
    """A name that can go on the EHLO line: one token of printable ASCII (an internationalised
    name in its xn-- form), at most 255 characters. Whether relays will like it is
    :func:`helo_problem`'s question (``doctor``)."""
    if not value:
        return
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ConfigError(f"{key}: {value!r} contains a space or control character")
    if not value.isascii():
        raise ConfigError(f"{key}: {value!r} has non-ASCII characters (use the xn-- form)")
    if len(value) > 255:
        raise ConfigError(f"{key}: {value[:30]!r}... is longer than 255 characters")


_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9])?"
_HOST_NAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")


def helo_problem(name: str) -> str:
    """Why relays and filters would score ``name`` as an EHLO greeting (rspamd
    ``HFILTER_HELO_*``, SpamAssassin ``HELO_LOCALHOST``), or ``""`` when it is a fully qualified
    name or a bracketed address literal (RFC 5321 4.1.3)."""
    import ipaddress

    lowered = name.lower().rstrip(".")
    if lowered.startswith("[") and lowered.endswith("]"):
        inner = lowered[1:-1]
        inner = inner[len("ipv6:") :] if inner.startswith("ipv6:") else inner
        try:
            ipaddress.ip_address(inner)
        except ValueError:
            return f"{name!r} is not an address literal like [192.0.2.1]"
        return ""
    if lowered in ("localhost", "localhost.localdomain") or lowered.endswith(".localhost"):
        return f"{name!r} is this machine's own name, which relays and spam filters score"
    try:
        ipaddress.ip_address(lowered)
    except ValueError:
        pass
    else:
        return f"{name!r} is an IP address without brackets (write it as [{name}])"
    if "." not in lowered:
        return f"{name!r} is a bare name, not a fully qualified one (like mail.example.org)"
    if not _HOST_NAME_RE.fullmatch(lowered):
        return f"{name!r} is not a host name (letters, digits, hyphens and dots)"
    return ""


# Said by `doctor` (a warning), `send` (before it asks) and the daemon (each week).
POSTAL_ADDRESS_MISSING = (
    "postal_address is empty: CAN-SPAM requires a physical postal address in commercial mail "
    "in the United States (readers everywhere expect one); set postal_address"
)


def _check_preflight(key: str, value: str) -> None:
    if value not in ("warn", "refuse", "off"):
        raise ConfigError(f"{key}: {value!r} is not one of warn, refuse, off")


def _check_bounce_trust(key: str, value: str) -> None:
    if value not in ("signed", "any"):
        raise ConfigError(f"{key}: {value!r} is not one of signed, any")


def _check_approval(key: str, value: str) -> None:
    if value not in ("none", "veto", "required"):
        raise ConfigError(f"{key}: {value!r} is not one of none, veto, required")


def _check_addresses(key: str, value: Any) -> None:
    seen: set[str] = set()
    for item in value:
        _check_address(key, item)
        if item.lower() in seen:
            raise ConfigError(f"{key}: {item!r} is listed twice")
        seen.add(item.lower())


# The webhooks' keys (bounces/webhooks): checked here so a typo is exit 2 naming the key.
_LABEL = r"(\*|[a-z0-9]([a-z0-9-]*[a-z0-9])?)"
_HOST_PATTERN = re.compile(rf"{_LABEL}(\.{_LABEL})+")


def _check_host_patterns(key: str, value: tuple[str, ...]) -> None:
    for pattern in value:
        host, _, port = pattern.rpartition(":") if ":" in pattern else (pattern, "", "")
        labels = host.lower().split(".")
        if (
            not _HOST_PATTERN.fullmatch(host.lower()) and host.lower() != "localhost"
        ) or (port and not (port.isdigit() and 0 < int(port) < 65536)) or (
            any(label == "*" for label in labels[-2:])
        ):
            raise ConfigError(
                f"{key}: {pattern!r} is not a host pattern (labels of letters, digits and "
                "hyphens, '*' for one label but not in the last two, optional :port)"
            )


def _check_topic_arns(key: str, value: tuple[str, ...]) -> None:
    for arn in value:
        parts = arn.split(":")
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sns" or not parts[5]:
            raise ConfigError(
                f"{key}: {arn!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)"
            )


def _check_basic_credentials(key: str, value: str) -> None:
    if value and (":" not in value or not value.partition(":")[0] or "\n" in value):
        raise ConfigError(f"{key}: expected 'user:pass', got a value without a user and ':'")


def _check_sendgrid_key(key: str, value: str) -> None:
    if not value:
        return
    import base64
    import binascii

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        public = load_der_public_key(base64.b64decode(value.strip(), validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ConfigError(
            f"{key}: not the base64 public key SendGrid shows (it does not decode)"
        ) from exc
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise ConfigError(f"{key}: SendGrid's key is an ECDSA P-256 public key; this is not")


CHECKS: dict[str, Callable[[str, Any], None]] = {
    "database_url": _check_database_url,
    "backend_url": _check_backend_url,
    "base_url": _check_http_url,
    "timezone": _check_timezone,
    "schedule": _check_schedule,
    "from_address": _check_address,
    "reply_to": _check_optional_address,
    "bounce_address": _check_optional_address,
    "unsubscribe_mailto": _check_optional_address,
    "list_name": _check_single_line,
    "list_id": _check_single_line,
    "log_level": _check_log_level,
    "metrics_address": _check_metrics_address,
    "dns_resolver": _check_dns_resolver,
    "smtp_helo_name": _check_helo_name,
    "preflight": _check_preflight,
    "bounce_trust": _check_bounce_trust,
    "bounce_mailbox": check_bounce_mailbox,
    "bounce_processed_folder": check_folder,
    "sns_certificate_hosts": _check_host_patterns,
    "ses_topic_arns": _check_topic_arns,
    "postmark_webhook_credentials": _check_basic_credentials,
    "sendgrid_verification_key": _check_sendgrid_key,
    "approval": _check_approval,
    "editors": _check_addresses,
}
