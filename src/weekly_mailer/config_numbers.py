"""The numeric configuration keys: parsed from TOML or the environment, and kept within bounds.

Every numeric key has a lower bound (0, or "more than 0") and an upper one: beyond them dates
overflow (``retry_give_up_hours = 1e9``) and sleeps never end. A value out of bounds is a
:class:`ConfigError` naming the key, like any other bad setting.
"""

from __future__ import annotations

import math
from typing import Any

from weekly_mailer.errors import ConfigError

NON_NEGATIVE = {
    "send_rate",
    "grace_hours",
    "throttle_pause_seconds",
    "complaint_rate_limit",
    "bounce_rate_limit",
    "metrics_linger_seconds",
    "daily_quota",
    "warmup_start",
    "proof_hours",
}

# The largest value each numeric key takes: beyond these, dates overflow and sleeps never end.
# The smallest is 0 for NON_NEGATIVE keys and "more than 0" for the others.
UPPER_BOUNDS: dict[str, float] = {
    "send_rate": 100_000,  # messages per second
    "concurrency": 100,
    "processes": 64,
    "grace_hours": 168,  # a week
    "retry_initial_seconds": 86_400,  # a day
    "retry_max_seconds": 604_800,  # a week
    "retry_give_up_hours": 8_760,  # a year
    "throttle_pause_seconds": 3_600,
    "daily_quota": 100_000_000,
    "warmup_start": 100_000_000,
    "warmup_factor": 100,
    "bounce_limit": 1_000,
    "block_pause_threshold": 100_000,
    "block_pause_window_minutes": 1_440,  # a day
    "block_pause_minutes": 10_080,  # a week
    "complaint_rate_limit": 1,  # a fraction of the copies: 1 never holds
    "bounce_rate_limit": 1,
    "smtp_timeout": 3_600,
    "smtp_command_timeout": 3_600,
    "smtp_data_init_timeout": 3_600,
    "smtp_data_timeout": 3_600,
    "max_per_connection": 1_000_000,
    "batch_size": 10_000,
    "lease_seconds": 86_400,
    "confirm_ttl_days": 366,
    "pending_ttl_days": 366,
    "signup_per_ip_per_hour": 1_000_000,
    "confirmations_per_address_per_day": 100,
    "max_request_bytes": 104_857_600,  # 100 MiB
    "port": 65_535,
    "metrics_linger_seconds": 3_600,
    "outage_limit_seconds": 604_800,  # a week
    "sqlite_busy_timeout_seconds": 3_600,
    "bounce_poll_seconds": 86_400,  # a day
    "proof_hours": 144,  # six days: a proof belongs to the week before its send
}


def _shown(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def _number(key: str, raw: Any, *, whole: bool, where: str) -> float | int:
    if isinstance(raw, bool):
        raise ConfigError(f"{key}: expected a number, got {raw!r}{where}")
    try:
        real = float(raw)
    except OverflowError as exc:  # an integer with hundreds of digits
        raise ConfigError(f"{key}: {_shown(raw)} is out of range{where}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: expected a number, got {_shown(raw)}{where}") from exc
    if math.isinf(real) and str(raw).strip().lstrip("+-").lower() not in ("inf", "infinity"):
        raise ConfigError(f"{key}: {_shown(raw)} is out of range{where}")  # "1" * 400
    if not math.isfinite(real):
        raise ConfigError(f"{key}: expected a finite number, got {_shown(raw)}{where}")
    if whole and not real.is_integer():
        raise ConfigError(f"{key}: expected a whole number, got {_shown(raw)}{where}")
    return int(real) if whole else real


def bounded_number(key: str, raw: Any, *, whole: bool, where: str = "") -> float | int:
    """``raw`` (a TOML number or an environment string) as a number within ``key``'s bounds."""
    number = _number(key, raw, whole=whole, where=where)
    if key == "port" and number > 65535:
        raise ConfigError(f"{key}: {raw!r} is not a TCP port (1-65535){where}")
    if number < 0 or (number == 0 and key not in NON_NEGATIVE):
        raise ConfigError(
            f"{key}: must be {'0 or more' if key in NON_NEGATIVE else 'positive'}{where}"
        )
    upper = UPPER_BOUNDS.get(key)
    if upper is not None and number > upper:
        raise ConfigError(f"{key}: {_shown(raw)} is too large (at most {upper:g}){where}")
    return number
