"""``bounce_mailbox``: the URL of the mailbox reports land in, parsed once (the config check and
``bounces.mailbox`` both use :func:`parse_mailbox_url`).

``imaps://user:pass@host[:port]/FOLDER`` (TLS from the start, port 993), ``imap://…`` (STARTTLS
required, 143), ``pop3s://user:pass@host[:port]`` (995) and ``pop3://…`` (STLS required, 110).
User, password and folder may be URL-encoded (``%40`` for ``@``); the folder defaults to
``INBOX``; POP3 has no folders. Query options, as in ``backend_url``: ``cafile=PATH`` (a CA
bundle to trust besides the system's) and ``verify=false`` (accept any certificate: test
servers only). The password never appears in a message or a key: :attr:`MailboxUrl.key` is the
URL without it, the name progress is kept under.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from weekly_mailer.errors import ConfigError

KEY = "bounce_mailbox"
PORTS = {"imaps": 993, "imap": 143, "pop3s": 995, "pop3": 110}
OPTIONS = frozenset({"cafile", "verify"})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MailboxUrl:
    """Where the bounce mailbox is and how to log in."""

    scheme: str  # imaps, imap, pop3s, pop3
    host: str
    port: int
    username: str
    password: str = dataclasses.field(repr=False)
    folder: str = "INBOX"  # IMAP only
    cafile: str = ""
    verify: bool = True

    @property
    def imap(self) -> bool:
        return self.scheme.startswith("imap")

    @property
    def implicit_tls(self) -> bool:
        return self.scheme.endswith("s")

    @property
    def key(self) -> str:
        """The URL without the password (nor options): the mailbox's name in ``mailbox_message``
        and in every line printed about it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = f"{self.scheme}://{quote(self.username, safe='')}@{host}:{self.port}"
        return where + (f"/{quote(self.folder, safe='/')}" if self.imap else "")


def _shown(value: str) -> str:
    """The URL with its password replaced by ``***``, for error messages."""
    parts = urlsplit(value)
    if parts.password is None:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def parse_mailbox_url(value: str, *, key: str = KEY) -> MailboxUrl:
    """The mailbox ``value`` names; a :class:`ConfigError` naming ``key`` and what is wrong."""
    shown = _shown(value)
    if any(ch.isspace() for ch in value):
        raise ConfigError(f"{key}: {shown!r} contains a space (URL-encode it: %20)")
    parts = urlsplit(value)
    if parts.scheme not in PORTS:
        raise ConfigError(
            f"{key}: {shown!r} is not an imaps://, imap://, pop3s:// or pop3:// URL "
            "(for example imaps://user:password@mail.example.org/INBOX)"
        )
    if not parts.hostname:
        raise ConfigError(f"{key}: {shown!r} names no host")
    try:
        port = parts.port or PORTS[parts.scheme]
    except ValueError as exc:
        raise ConfigError(f"{key}: {shown!r} has a bad port") from exc
    if not parts.username or parts.password is None:
        raise ConfigError(f"{key}: {shown!r} needs a user and a password (user:password@host)")
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise ConfigError(f"{key}: {shown!r} has a malformed query") from exc
    options = dict(query) if parts.query else {}
    unknown = set(options) - OPTIONS
    if unknown:
        raise ConfigError(
            f"{key}: unknown option(s) {', '.join(sorted(unknown))} (known: cafile, verify)"
        )
    verify_text = options.get("verify", "true").lower()
    if verify_text not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
        raise ConfigError(f"{key}: verify={options['verify']!r} is not true or false")
    folder = unquote(parts.path.lstrip("/"))
    if parts.scheme.startswith("pop3"):
        if folder:
            raise ConfigError(f"{key}: POP3 has no folders; drop /{folder} from {shown!r}")
    else:
        folder = folder.rstrip("/") or "INBOX"
        if any(ord(ch) < 32 for ch in folder):
            raise ConfigError(f"{key}: the folder in {shown!r} has a control character")
    if parts.fragment:
        raise ConfigError(f"{key}: {shown!r} must not have a #fragment")
    return MailboxUrl(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username),
        password=unquote(parts.password),
        folder=folder if parts.scheme.startswith("imap") else "",
        cafile=options.get("cafile", ""),
        verify=verify_text in ("true", "yes", "1", "on"),
    )


def check_bounce_mailbox(key: str, value: str) -> None:
    """The config check of ``bounce_mailbox`` (empty: no mailbox)."""
    if value:
        parse_mailbox_url(value, key=key)


def check_folder(key: str, value: str) -> None:
    """The config check of ``bounce_processed_folder``: a folder name, one line."""
    if not value.strip():
        raise ConfigError(f"{key}: must name a folder (default Processed)")
    if any(ord(ch) < 32 for ch in value):
        raise ConfigError(f"{key}: {value!r} has a control character")
