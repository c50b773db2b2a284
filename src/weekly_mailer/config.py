"""Settings: embedded defaults < ``weekly_mailer.toml`` < ``WEEKLY_MAILER_<KEY>`` variables.

The file is ``--config PATH``, else ``$WEEKLY_MAILER_CONFIG``, else ``./weekly_mailer.toml`` when
it exists. Every value is validated here, once; a bad one raises :class:`ConfigError` whose
message names the key and the reason (the checks of the text keys are in ``config_checks``, of
the numeric ones in ``config_numbers``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Re-exported: ``weekly_mailer.config`` keeps exporting what it did before the split.
from weekly_mailer.config_checks import BACKEND_SCHEMES as BACKEND_SCHEMES
from weekly_mailer.config_checks import CHECKS as CHECKS
from weekly_mailer.config_checks import DAYS as DAYS
from weekly_mailer.config_checks import parse_dns_resolver as parse_dns_resolver
from weekly_mailer.config_checks import parse_schedule as parse_schedule
from weekly_mailer.config_checks import parse_schedule_seconds as parse_schedule_seconds
from weekly_mailer.config_checks import split_host_port as split_host_port
from weekly_mailer.config_numbers import bounded_number
from weekly_mailer.errors import ConfigError

ENV_PREFIX = "WEEKLY_MAILER_"
DEFAULT_CONFIG_NAME = "weekly_mailer.toml"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Validated settings. See the README's configuration table for each key."""

    database_url: str = "sqlite:///weekly_mailer.db"
    backend_url: str = "file://./outbox"
    from_address: str = "Weekly Mailer <newsletter@localhost>"
    reply_to: str = ""
    bounce_address: str = ""
    list_name: str = "Weekly Mailer"
    list_id: str = ""  # empty: weekly.<the From domain> (see __post_init__)
    base_url: str = "http://127.0.0.1:8080"
    secret_key: str = ""
    schedule: str = "wed 18:00"
    timezone: str = "America/Los_Angeles"
    article_source: str = ""
    send_rate: float = 0.0
    concurrency: int = 2
    processes: int = dataclasses.field(default_factory=lambda: cores())
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim_key_file: str = ""
    dkim_ed25519_selector: str = ""
    dkim_ed25519_key_file: str = ""
    templates_dir: str = ""
    postal_address: str = ""
    unsubscribe_mailto: str = ""
    grace_hours: float = 12.0
    retry_initial_seconds: float = 600.0
    retry_max_seconds: float = 14400.0
    retry_give_up_hours: float = 96.0
    throttle_pause_seconds: float = 30.0
    daily_quota: int = 0
    warmup_start: int = 0
    warmup_factor: float = 2.0
    bounce_limit: int = 3
    verp: bool = True
    bounce_trust: str = "signed"
    bounce_mailbox: str = ""
    bounce_processed_folder: str = "Processed"
    bounce_poll_seconds: float = 300.0
    ses_topic_arns: tuple[str, ...] = ()
    sns_certificate_hosts: tuple[str, ...] = ("sns.*.amazonaws.com",)
    mailgun_signing_key: str = ""
    postmark_webhook_credentials: str = ""
    sendgrid_verification_key: str = ""
    block_pause_threshold: int = 10
    block_pause_window_minutes: float = 10.0
    block_pause_minutes: float = 30.0
    complaint_rate_limit: float = 0.003
    bounce_rate_limit: float = 0.05
    smtp_timeout: float = 30.0
    smtp_helo_name: str = ""  # empty: the host's fully qualified name (see helo_name)
    smtp_command_timeout: float = 300.0
    smtp_data_init_timeout: float = 120.0
    smtp_data_timeout: float = 600.0
    max_per_connection: int = 100
    batch_size: int = 100
    lease_seconds: float = 30.0
    confirm_ttl_days: float = 7.0
    pending_ttl_days: float = 7.0
    signup_per_ip_per_hour: int = 20
    confirmations_per_address_per_day: int = 1
    max_request_bytes: int = 65536
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    metrics_address: str = ""
    metrics_linger_seconds: float = 0.0
    outage_limit_seconds: float = 300.0
    sqlite_busy_timeout_seconds: float = 30.0
    journal_dir: str = ""
    dns_resolver: str = ""
    preflight: str = "warn"
    editors: tuple[str, ...] = ()
    proof_hours: float = 24.0
    approval: str = "none"

    def __post_init__(self) -> None:
        if not self.list_id:  # a name under the From domain, never a reserved one
            object.__setattr__(self, "list_id", default_list_id(self.from_address))

    @property
    def helo_name(self) -> str:
        """The name both SMTP engines (and the pre-flight) greet the relay with in EHLO/HELO:
        ``smtp_helo_name``, else the host's fully qualified name."""
        return self.smtp_helo_name or host_fqdn()

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The configured timezone as a ``ZoneInfo``."""
        return zoneinfo.ZoneInfo(self.timezone)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some keys changed (validated again)."""
        values = dataclasses.asdict(self) | changes
        if "list_id" not in changes and self.list_id == default_list_id(self.from_address):
            values["list_id"] = ""  # derived from the From address: it follows a new one
        return _validated(values, {k: "override" for k in changes})


def default_list_id(from_address: str) -> str:
    """``list_id``'s default: ``weekly.<the From domain>`` (RFC 2919 asks for a name under a
    domain the sender controls)."""
    from email.utils import parseaddr

    domain = parseaddr(from_address)[1].rpartition("@")[2].strip().lower()
    return f"weekly.{domain or 'localhost'}"


@functools.lru_cache(maxsize=1)
def host_fqdn() -> str:
    """``socket.getfqdn()``, looked up once per process (it may ask DNS)."""
    return socket.getfqdn()


def cores() -> int:
    """The number of cores this process may use (the default of ``processes``), at most 64."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(64, n))


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)}

DESCRIPTIONS: dict[str, str] = {
    "database_url": "SQLAlchemy URL: sqlite:///file.db or postgresql+psycopg://user@host/db",
    "backend_url": "smtp://user:pass@host:587?starttls=true, smtps://…, file:///dir, console://",
    "from_address": "From header of every message",
    "reply_to": "optional Reply-To header",
    "bounce_address": "SMTP envelope sender (Return-Path) where bounces go; default from_address",
    "list_name": "the newsletter's name, shown in subjects' footers and pages",
    "list_id": "List-Id header value (a domain-like identifier; default: weekly.<the From "
    "address's domain>)",
    "base_url": "public URL of the web app, used in every link",
    "secret_key": "signs confirm and unsubscribe links; `init` generates one",
    "schedule": "weekly send time: 'wed 18:00' (day and 24-hour time, optional :SS)",
    "timezone": "IANA timezone of the schedule",
    "article_source": "feed URL or path, a Markdown/text file, or a folder of weekly files",
    "send_rate": "messages per second across all connections (0 = unlimited)",
    "concurrency": "SMTP connections used at once",
    "processes": "delivery processes `send`, `worker` and `run` run (default: the number of "
    "cores); `concurrency` and `send_rate` are shared out among them",
    "dkim_domain": "DKIM signing domain (d=)",
    "dkim_selector": "DKIM selector (s=)",
    "dkim_key_file": "PEM private key for DKIM",
    "dkim_ed25519_selector": "DKIM selector (s=) of the optional Ed25519 key (RFC 8463)",
    "dkim_ed25519_key_file": "Ed25519 private key for DKIM; with dkim_key_file too, dual-signed",
    "templates_dir": "folder whose templates override the built-in ones",
    "postal_address": "the sender's postal address, shown in every footer (CAN-SPAM requires "
    "one in US commercial mail: without it doctor warns and send asks at a terminal)",
    "unsubscribe_mailto": "address added to List-Unsubscribe as a mailto: URL",
    "grace_hours": "how late a missed weekly send may still go out",
    "retry_initial_seconds": "first retry delay after a temporary failure",
    "retry_max_seconds": "longest delay between retries",
    "retry_give_up_hours": "age after which a deferred message is failed",
    "throttle_pause_seconds": "pause of the whole send after a throttling reply",
    "daily_quota": "at most this many messages (every kind, every process) in any rolling 24 "
    "hours, counted in the database; the rest wait (0 = no quota)",
    "warmup_start": "warm-up of a new sending domain: issue copies allowed on the first sending "
    "day, growing by warmup_factor each sending day until the list is covered (0 = off); with "
    "daily_quota, the smaller wins",
    "warmup_factor": "how much the warm-up's daily allowance grows each sending day (more than 1)",
    "bounce_limit": "hard bounces after which a subscriber is marked bounced",
    "bounce_trust": "signed: a report changes a reader only when tied to a message we sent them "
    "(signed VERP address, our Message-ID, a verified webhook event); any: believe any report",
    "bounce_mailbox": "the mailbox reports land in, read by `bounces fetch` and polled by `run`: "
    "imaps://user:pass@host[:port]/FOLDER, imap://… (STARTTLS), pop3s://user:pass@host[:port], "
    "pop3://… (STLS); ?cafile=PATH trusts a CA besides the system's (empty: no mailbox)",
    "bounce_processed_folder": "IMAP folder reports are moved to once applied (created when "
    "missing); other mail is never moved, deleted or marked read",
    "bounce_poll_seconds": "how often `run` reads bounce_mailbox when the server offers no IMAP "
    "IDLE (with IDLE: at once, and at least this often)",
    "ses_topic_arns": "POST /webhooks/ses: the SNS topic ARNs whose SES bounce and complaint "
    "notifications are accepted (a TOML array; comma-separated in WEEKLY_MAILER_SES_TOPIC_ARNS; "
    "empty: the route is off)",
    "sns_certificate_hosts": "hosts SNS signing certificates and SubscribeURLs may come from, "
    "over https only ('*' is one label; host:port allows that port; a TOML array, "
    "comma-separated in its variable)",
    "mailgun_signing_key": "POST /webhooks/mailgun: Mailgun's HTTP webhook signing key (empty: "
    "off)",
    "postmark_webhook_credentials": "POST /webhooks/postmark: the 'user:pass' of the webhook's "
    "basic auth (empty: off)",
    "sendgrid_verification_key": "POST /webhooks/sendgrid: the base64 public key SendGrid shows "
    "for its signed event webhook (empty: off)",
    "verp": "with bounce_address set, each message's envelope sender names its delivery, signed"
    " (bounces+ID-MAC@domain); false sends every message from bounce_address itself",
    "block_pause_threshold": "blocks (spam, policy refusals) from one receiving domain that pause"
    " sending to it",
    "block_pause_window_minutes": "the minutes within which block_pause_threshold blocks pause a"
    " domain",
    "block_pause_minutes": "how long sending to a domain pauses after a burst of blocks",
    "complaint_rate_limit": "an issue's complaints per delivered copy above which the next "
    "weekly send is held (0.003 = 0.3%, Gmail's limit for bulk senders; 1 = never)",
    "bounce_rate_limit": "an issue's hard bounces per copy sent above which the next weekly "
    "send is held (0.05 = 5%; 1 = never)",
    "smtp_timeout": "SMTP socket timeout in seconds",
    "smtp_helo_name": "the name both SMTP engines greet the relay with (EHLO/HELO): this "
    "host's public name, e.g. mail.example.org, or an address literal like [192.0.2.1] "
    "(default: the host's fully qualified name)",
    "smtp_command_timeout": "pipelined engine: seconds to wait for the reply to MAIL or RCPT",
    "smtp_data_init_timeout": "pipelined engine: seconds to wait for the reply to DATA",
    "smtp_data_timeout": "pipelined engine: seconds to wait for the reply to the final dot",
    "max_per_connection": "messages sent over one SMTP connection before reconnecting",
    "batch_size": "outbox rows claimed per batch",
    "lease_seconds": "how long a claimed batch belongs to its worker unless renewed (a live "
    "worker renews every lease_seconds / 3; a dead one's rows are taken back after it)",
    "confirm_ttl_days": "validity of confirmation links",
    "pending_ttl_days": "age after which an unconfirmed sign-up is forgotten",
    "signup_per_ip_per_hour": "sign-ups accepted from one IP address per hour",
    "confirmations_per_address_per_day": "confirmation e-mails sent to one address per day",
    "max_request_bytes": "largest request body the web app accepts",
    "host": "address `serve` and `run` listen on",
    "port": "port `serve` and `run` listen on",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "metrics_address": "host:port of the Prometheus /metrics listener of send, worker, serve "
    "and run, e.g. 127.0.0.1:9108 (empty: off)",
    "metrics_linger_seconds": "how long `send` keeps its metrics listener open after the send, "
    "until one last scrape (0: it exits at once)",
    "outage_limit_seconds": "how long the delivery runner waits out a database outage before "
    "the command ends (exit 2)",
    "sqlite_busy_timeout_seconds": "how long a SQLite write waits for another writer's lock "
    "before it counts as an outage",
    "journal_dir": "folder of the delivery processes' acceptance journals (default: beside a "
    "SQLite database, else under $XDG_STATE_HOME/weekly_mailer/journal)",
    "dns_resolver": "the DNS resolver the pre-flight asks (host[:port], an IP address; empty: "
    "the system's)",
    "preflight": "before each send: warn (log or ask, then send), refuse (a failure holds the "
    "week until `issues release`) or off",
    "editors": "addresses mailed a [Proof] of each issue proof_hours before its send (a TOML "
    "array; comma-separated in WEEKLY_MAILER_EDITORS; empty: no proofs)",
    "proof_hours": "hours before the send the proof goes to the editors (fractions allowed; "
    "0 = no proof)",
    "approval": "none (send as today), veto (send unless an editor vetoes) or required (send "
    "only once an editor approved the issue's current content, waiting within grace_hours)",
}



def _coerce(key: str, raw: Any, origin: str) -> Any:
    field = FIELDS[key]
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    where = f" (from {origin})" if origin else ""
    if kind == "str":
        if not isinstance(raw, str):
            raise ConfigError(f"{key}: expected a string, got {raw!r}{where}")
        return raw
    if kind in ("int", "float"):
        return bounded_number(key, raw, whole=kind == "int", where=where)
    if kind == "bool":
        return _boolean(key, raw, where)
    if kind == "tuple[str, ...]":
        return _string_list(key, raw, where)
    raise AssertionError(kind)  # pragma: no cover


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _boolean(key: str, raw: Any, where: str) -> bool:
    """A TOML boolean, or an environment string: true/false, yes/no, on/off, 1/0."""
    if isinstance(raw, bool):
        return raw
    text = raw.strip().lower() if isinstance(raw, str) else None
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    shown = raw if not isinstance(raw, str) or len(raw) <= 40 else f"{raw[:30]}..."
    raise ConfigError(f"{key}: expected true or false, got {shown!r}{where}")


def _string_list(key: str, raw: Any, where: str) -> tuple[str, ...]:
    """A TOML array of strings, or an environment string of comma-separated items."""
    if isinstance(raw, str):
        items = [item.strip() for item in raw.split(",")]
        return tuple(item for item in items if item)
    if isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
        return tuple(item.strip() for item in raw if item.strip())
    raise ConfigError(f"{key}: expected a list of strings, got {raw!r}{where}")


def _validated(values: Mapping[str, Any], origins: Mapping[str, str]) -> Settings:
    clean: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in FIELDS:
            raise ConfigError(f"{key}: unknown configuration key ({origins.get(key, 'config')})")
        clean[key] = _coerce(key, raw, origins.get(key, ""))
        check = CHECKS.get(key)
        if check is not None:
            check(key, clean[key])
    settings = Settings(**clean)
    if settings.warmup_factor <= 1:
        raise ConfigError(
            f"warmup_factor: must be more than 1 (the daily allowance grows by it), "
            f"got {settings.warmup_factor:g}"
        )
    if settings.approval != "none" and not (settings.editors and settings.proof_hours > 0):
        raise ConfigError(
            f"approval: {settings.approval!r} needs editors and proof_hours above 0 (the "
            "editors approve or veto the proof they are mailed)"
        )
    if settings.metrics_address:
        _host, port = split_host_port("metrics_address", settings.metrics_address)
        if port == settings.port:
            raise ConfigError(
                f"metrics_address: {settings.metrics_address!r} uses the web app's port "
                f"{port}; give the metrics a port of their own"
            )
    return settings


def config_path(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to read, or ``None`` to run on defaults and the environment."""
    if explicit:
        return Path(explicit)
    if environ.get(ENV_PREFIX + "CONFIG"):
        return Path(environ[ENV_PREFIX + "CONFIG"])
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.exists() else None


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read, merge and validate settings. Raises :class:`ConfigError`."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    file = config_path(path, env)
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(f"config: file {str(file)!r} does not exist") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config: {file} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                f"at offset {exc.start}); save it as UTF-8"
            ) from exc
        except OSError as exc:
            raise ConfigError(f"config: cannot read {str(file)!r}: {exc.strerror}") from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {file} is not valid TOML: {exc}") from exc
        if "weekly_mailer" in data and isinstance(data["weekly_mailer"], dict):
            data = data["weekly_mailer"]
        for key, value in data.items():
            values[key] = value
            origins[key] = str(file)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in FIELDS:
            if key.startswith("test_"):
                continue  # reserved for the test suite's own switches
            raise ConfigError(f"{key}: unknown configuration key (environment variable {name})")
        values[key] = value
        origins[key] = f"environment variable {name}"
    return _validated(values, origins)


def starter_config(*, secret_key: str, database_url: str, backend_url: str) -> str:
    """The text of a starter ``weekly_mailer.toml``."""
    import tomli_w

    values = {
        "database_url": database_url,
        "backend_url": backend_url,
        "from_address": Settings.from_address,
        "list_name": Settings.list_name,
        "base_url": Settings.base_url,
        "secret_key": secret_key,
        "schedule": Settings.schedule,
        "timezone": Settings.timezone,
        "article_source": "",
        "postal_address": "",
    }
    header = (
        "# weekly_mailer configuration. Every key can be overridden by WEEKLY_MAILER_<KEY>.\n"
        "# Keep secret_key secret: it signs every confirm and unsubscribe link.\n"
    )
    return header + tomli_w.dumps(values)
