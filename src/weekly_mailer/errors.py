"""The exception tree of weekly_mailer.

::

    WeeklyMailerError
     ├── ConfigError            a setting is missing or malformed (CLI exit code 2)
     ├── DatabaseNotReadyError  the database has not been created or migrated
     ├── SubscriberError        an address or subscriber operation was refused
     │    └── InvalidAddressError
     ├── ArticleError           an article source could not be read or parsed
     ├── ComposeError           an issue could not be composed or personalised
     │    └── HeaderInjectionError
     ├── TokenError             a signed link token is tampered, expired or foreign
     └── DeliveryError          raised by backends, mapped once at the boundary
          ├── TemporaryFailure  4xx replies, network errors: retry later
          └── PermanentFailure  5xx replies: never retried, counted as a bounce

Every error message is one line meant for a person; the CLI prints it without a traceback.
"""

from __future__ import annotations


class WeeklyMailerError(Exception):
    """The root of every error this package raises on purpose."""

    exit_code = 1


class ConfigError(WeeklyMailerError):
    """A configuration key is unknown, missing or malformed."""

    exit_code = 2


class DatabaseNotReadyError(WeeklyMailerError):
    """The database is missing or not migrated to the current schema."""

    exit_code = 2


class SubscriberError(WeeklyMailerError):
    """A subscriber operation was refused."""


class InvalidAddressError(SubscriberError):
    """An e-mail address is not syntactically valid."""


class ArticleError(WeeklyMailerError):
    """An article source could not be read or has no usable content."""


class ComposeError(WeeklyMailerError):
    """An issue or message could not be composed."""


class HeaderInjectionError(ComposeError):
    """A header value contains CR or LF (or another forbidden control character)."""


class TokenError(WeeklyMailerError):
    """A signed token is invalid, expired, or meant for another purpose."""


class DeliveryError(WeeklyMailerError):
    """A message could not be handed to the backend."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TemporaryFailure(DeliveryError):
    """The message may be delivered if tried again later (4xx, network trouble)."""

    def __init__(self, message: str, *, code: int | None = None, throttle: bool = False) -> None:
        super().__init__(message, code=code)
        self.throttle = throttle


class PermanentFailure(DeliveryError):
    """The message will never be accepted for this recipient (5xx)."""
