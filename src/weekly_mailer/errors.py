"""The exception tree of weekly_mailer: every error raised on purpose is drawn here.

::

    WeeklyMailerError
     ├── ConfigError              a setting is missing or malformed (CLI exit code 2)
     ├── DatabaseNotReadyError    the database has not been created or migrated (exit 2)
     ├── DatabaseUnavailableError the database is unreachable, restarting or locked: an outage
     │    │                       the delivery runner waits out (store.db.outage_guard)
     │    └── OutageTooLongError  ... for longer than outage_limit_seconds (exit 2)
     ├── SubscriberError          an address or subscriber operation was refused
     │    └── InvalidAddressError
     ├── ArticleError             an article source could not be read or parsed
     │    └── NoArticleError      no new article this week (the week is recorded as skipped)
     ├── ComposeError             an issue could not be composed or personalised
     │    └── HeaderInjectionError
     ├── TokenError               a signed link token is tampered, expired or foreign
     ├── IssueError               an issue cannot be found, made or sent as asked
     │    ├── IssueNotFoundError  no issue has that id
     │    ├── SendError           ``send`` cannot start (no article, the week was skipped, …)
     │    │    └── WeekHeldError  the list-health guard holds the send (exit 3)
     │    └── ProofError          an approval or veto cannot be recorded (no proof, week sent)
     ├── DemoError                the demo folder cannot be used
     ├── MailboxError             the bounce mailbox cannot be read (connect, TLS, login, folder)
     └── DeliveryError            raised by backends, mapped once at the boundary
          ├── BackendUnavailableError  the backend takes nothing now (outage, refused login)
          ├── SendHaltedError     the worker stopped the whole send (circuit breaker)
          ├── TemporaryFailure    4xx replies, network errors: retry later
          │    ├── BackendBusyError    a 4xx greeting: nothing was attempted
          │    └── LeaseLostError      not sent: the worker no longer holds the row's lease
          └── PermanentFailure    5xx replies: never retried; whether one is a hard bounce
               │                  is the classifier's call (delivery.results.counts_as_bounce)
               └── NotABounce     a 5xx about the message or sender, not the mailbox

Every error message is one line meant for a person: the CLI prints it without a traceback and
the web shows a plain page. Third-party errors are converted with ``raise … from exc``, so the
cause stays in logs and debuggers.
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


class DatabaseUnavailableError(WeeklyMailerError):
    """The database cannot be reached now (a lost connection, a restart, a lock held past the
    busy timeout, a full disk): an outage, waited out by the delivery runner."""

    exit_code = 2


class OutageTooLongError(DatabaseUnavailableError):
    """An outage lasted longer than ``outage_limit_seconds``: the command ends."""


class SubscriberError(WeeklyMailerError):
    """A subscriber operation was refused."""


class InvalidAddressError(SubscriberError):
    """An e-mail address is not syntactically valid."""


class ArticleError(WeeklyMailerError):
    """An article source could not be read or has no usable content."""


class NoArticleError(ArticleError):
    """There is no new article for this week: the week is recorded as skipped."""


class ComposeError(WeeklyMailerError):
    """An issue or message could not be composed."""


class HeaderInjectionError(ComposeError):
    """A header value contains CR or LF (or another forbidden control character)."""


class TokenError(WeeklyMailerError):
    """A signed token is invalid, expired, or meant for another purpose."""


class IssueError(WeeklyMailerError):
    """An issue cannot be found, made or sent as asked."""


class IssueNotFoundError(IssueError):
    """No issue has the given id."""


class SendError(IssueError):
    """The send cannot start (no article, the week was skipped, …)."""


class WeekHeldError(SendError):
    """The list-health guard holds the weekly send (``issues release`` lets it go): exit 3."""

    exit_code = 3


class ProofError(IssueError):
    """An approval or a veto cannot be recorded (no proof yet, the week sent, an old proof)."""


class DemoError(WeeklyMailerError):
    """The demo folder cannot be used."""


class MailboxError(WeeklyMailerError):
    """The bounce mailbox (``bounce_mailbox``) cannot be reached, logged in to or read now."""


class DeliveryError(WeeklyMailerError):
    """A message could not be handed to the backend."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class BackendUnavailableError(DeliveryError):
    """The backend cannot take any message now (cannot connect, log in, or write).

    Not about one recipient: the worker hands the claimed rows back untouched and stops (or, as a
    daemon, waits and tries again), so an outage never turns into failed or deferred rows.
    """


class SendHaltedError(DeliveryError):
    """The worker stopped the whole send (e.g. the same refusal for many recipients in a row)."""


class TemporaryFailure(DeliveryError):
    """The message may be delivered if tried again later (4xx, network trouble)."""

    def __init__(self, message: str, *, code: int | None = None, throttle: bool = False) -> None:
        super().__init__(message, code=code)
        self.throttle = throttle


class BackendBusyError(TemporaryFailure):
    """The server is not taking a connection just now (a 4xx greeting: "too many connections").

    Nothing was attempted: the worker hands the row back untouched and pauses the whole send.
    """


class LeaseLostError(TemporaryFailure):
    """Not sent: the worker's lease on the row may be lost (it was paused past it, or another
    worker claimed the row); the row is handed back under the fence, nothing of it went out."""


class PermanentFailure(DeliveryError):
    """The message will never be accepted for this recipient (5xx). Not every one is a hard
    bounce: a block or a policy refusal is not (``delivery.results.counts_as_bounce``)."""


class NotABounce(PermanentFailure):
    """A 5xx that is about the message or the sender's standing, not the mailbox (e.g. a 554
    policy refusal at DATA): the row fails and is not retried, but it is not a hard bounce."""
