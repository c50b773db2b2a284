"""Per-recipient identifiers and links: Message-ID, unsubscribe and confirm URLs, archive URL."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
from typing import TYPE_CHECKING

from weekly_mailer.compose.headers import domain_of
from weekly_mailer.tokens import Purpose, signer_for

if TYPE_CHECKING:
    from weekly_mailer.config import Settings


def issue_key(issue: int | dt.date | str) -> str:
    """The issue's id as text, or its send week as ``YYYY-MM-DD``."""
    if isinstance(issue, dt.date):
        return issue.isoformat()
    return str(issue)


def make_message_id(settings: Settings, issue: int | dt.date | str, subscriber_id: int) -> str:
    """A deterministic ``<wm.ISSUE.SUBSCRIBER.DIGEST@domain>``: same issue + subscriber, same id.

    ``issue`` is the issue id (or its send week when there is no id yet). The digest is an HMAC
    of both with ``secret_key``, so ids cannot be guessed; the domain is the From address's.
    """
    key = issue_key(issue)
    mac, domain = _id_parts(settings.secret_key, settings.from_address)
    mac = mac.copy()
    mac.update(f"{key}:{subscriber_id}".encode())
    return f"<wm.{_safe_key(key)}.{subscriber_id}.{mac.hexdigest()[:16]}@{domain}>"


@functools.lru_cache(maxsize=8)
def _id_parts(secret_key: str, from_address: str) -> tuple[hmac.HMAC, str]:
    """The keyed HMAC (copied per id) and the From domain: the same for every copy of a send,
    and parsing the address costs more than the rest of an id."""
    return hmac.new(secret_key.encode("utf-8"), digestmod=hashlib.sha256), domain_of(from_address)


@functools.lru_cache(maxsize=64)
def _safe_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in key)


_OUR_ID = re.compile(r"^<wm\.([A-Za-z0-9_-]+)\.(\d{1,18})\.([0-9a-f]{16})@[^<>\s]+>$")
# The same shape anywhere in a text, with or without its angle brackets (some feedback loops
# quote ``Message-ID: wm.…@domain`` bare); the domain stops before a trailing dot or quote.
_OUR_ID_IN_TEXT = re.compile(
    r"(?<![\w.-])<?(wm\.[A-Za-z0-9_-]+\.\d{1,18}\.[0-9a-f]{16}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>?"
)


def find_message_ids(text: str) -> list[str]:
    """Every Message-ID shaped like :func:`make_message_id`'s in ``text``, bracketed (``<…>``),
    each once, in order of appearance. Shaped only: :func:`read_message_id` says whose."""
    return list(dict.fromkeys(f"<{m.group(1)}>" for m in _OUR_ID_IN_TEXT.finditer(text)))


def read_message_id(message_id: str, *, secret_key: str) -> tuple[str, int] | None:
    """The ``(issue key, subscriber id)`` of a Message-ID :func:`make_message_id` made with
    ``secret_key``; ``None`` for any other id, or one whose digest does not match (forged, or
    made under another key). The key is the send week (``YYYY-MM-DD``) or the issue id."""
    m = _OUR_ID.match(message_id.strip())
    if m is None or not secret_key:
        return None
    key, subscriber_id = m.group(1), int(m.group(2))
    digest = hmac.new(
        secret_key.encode("utf-8"), f"{key}:{subscriber_id}".encode(), hashlib.sha256
    ).hexdigest()[:16]
    return (key, subscriber_id) if hmac.compare_digest(digest, m.group(3)) else None


def unsubscribe_url(settings: Settings, subscriber_id: int, email_key: str) -> str:
    """``{base_url}/unsubscribe/{token}`` with a signed, purpose-bound, non-expiring token."""
    token = signer_for(settings.secret_key).make(Purpose.UNSUBSCRIBE, subscriber_id, email_key)
    return f"{settings.base_url.rstrip('/')}/unsubscribe/{token}"


def manage_url(settings: Settings, subscriber_id: int, email_key: str) -> str:
    """``{base_url}/manage/{token}``: the reader's own page, a signed, purpose-bound,
    non-expiring token (it dies when the address changes)."""
    token = signer_for(settings.secret_key).make(Purpose.MANAGE, subscriber_id, email_key)
    return f"{settings.base_url.rstrip('/')}/manage/{token}"


def confirm_url(settings: Settings, subscriber_id: int, email_key: str, *, signup: str) -> str:
    """``{base_url}/confirm/{token}``: a signed, purpose-bound token (it expires after
    ``confirm_ttl_days``, checked where the link is opened), bound to the sign-up it is sent
    for (``signup``, from ``subscribers.optin.signup_binding``)."""
    token = signer_for(settings.secret_key).make(
        Purpose.CONFIRM, subscriber_id, email_key, bound_to=signup
    )
    return f"{settings.base_url.rstrip('/')}/confirm/{token}"


def confirmation_message_id(settings: Settings, delivery_id: int, subscriber_id: int) -> str:
    """The Message-ID of the confirmation e-mail of one outbox row: a retry, or a resend after a
    crash, carries the same id; another request (another row) gets another."""
    return make_message_id(settings, f"confirm-{delivery_id}", subscriber_id)


def archive_url(settings: Settings, issue: int | dt.date | str) -> str:
    """The "view in browser" page: ``{base_url}/archive/{issue id or send week}``."""
    return f"{settings.base_url.rstrip('/')}/archive/{issue_key(issue)}"


def list_unsubscribe(settings: Settings, url: str) -> str:
    """The List-Unsubscribe value: ``<url>`` plus ``<mailto:…?subject=unsubscribe>`` if set."""
    value = f"<{url}>"
    if settings.unsubscribe_mailto:
        from weekly_mailer.compose.headers import address_of

        value += f", <mailto:{address_of(settings.unsubscribe_mailto)}?subject=unsubscribe>"
    return value


# The pre-flight's one-click probe: an unsubscribe token, signed, for subscriber 0 (ids start
# at 1) and an address no reader can have. The route answers it 200 and changes nothing.
PROBE_SUBSCRIBER_ID = 0
PROBE_EMAIL_KEY = "preflight-probe@invalid"


def probe_unsubscribe_url(settings: Settings) -> str:
    """``{base_url}/unsubscribe/{probe token}`` (see :func:`is_probe_token`)."""
    token = signer_for(settings.secret_key).make(
        Purpose.UNSUBSCRIBE, PROBE_SUBSCRIBER_ID, PROBE_EMAIL_KEY
    )
    return f"{settings.base_url.rstrip('/')}/unsubscribe/{token}"


def is_probe_token(secret_key: str, token: str) -> bool:
    """Whether ``token`` is the pre-flight's signed probe (for no subscriber)."""
    return _is_nobodys_token(secret_key, token, PROBE_EMAIL_KEY)


# A ``preview --send-test`` copy's unsubscribe link: signed like the probe, for subscriber 0 and
# an address of its own, so the page it opens says it was a test copy and changes nothing.
TEST_COPY_EMAIL_KEY = "test-copy@invalid"


def unsubscribe_url_for_test_copy(settings: Settings) -> str:
    """``{base_url}/unsubscribe/{test-copy token}`` (see :func:`is_test_copy_token`)."""
    token = signer_for(settings.secret_key).make(
        Purpose.UNSUBSCRIBE, PROBE_SUBSCRIBER_ID, TEST_COPY_EMAIL_KEY
    )
    return f"{settings.base_url.rstrip('/')}/unsubscribe/{token}"


def is_test_copy_token(secret_key: str, token: str) -> bool:
    """Whether ``token`` is a test copy's signed unsubscribe token (for no subscriber)."""
    return _is_nobodys_token(secret_key, token, TEST_COPY_EMAIL_KEY)


def _is_nobodys_token(secret_key: str, token: str, email_key: str) -> bool:
    from weekly_mailer.errors import TokenError

    try:
        signer = signer_for(secret_key)
        subscriber_id, digest = signer.load(Purpose.UNSUBSCRIBE, token)
    except TokenError:
        return False
    return subscriber_id == PROBE_SUBSCRIBER_ID and signer.matches(digest, email_key)
