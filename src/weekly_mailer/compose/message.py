"""The message's headers, and the slow reference path: one ``EmailMessage`` per recipient.

The reference path exists so tests can prove the fast path (:mod:`.personalise`) exact; it is
also what the confirmation email uses (one message at a time, speed does not matter there).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
from collections.abc import Callable, Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from typing import TYPE_CHECKING

from weekly_mailer.compose import placeholders as ph
from weekly_mailer.compose.headers import (
    POLICY,
    check_address,
    check_message_id,
    check_single_line,
    check_url,
    clean_display_name,
    domain_of,
)
from weekly_mailer.compose.links import list_unsubscribe
from weekly_mailer.errors import ComposeError

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

# Headers a DKIM signature covers and oversigns: named once more in ``h=`` than the message has
# them (RFC 6376 §8.15), also when it has none, so a copy added in transit breaks the signature.
DKIM_HEADERS = (
    b"From", b"To", b"Subject", b"Date", b"Message-ID", b"Content-Type", b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)  # fmt: skip
# Headers it also covers where they appear (each instance signed once, none added).
DKIM_PRESENT_HEADERS = (
    b"MIME-Version", b"List-Id", b"Precedence", b"Feedback-ID", b"Auto-Submitted",
)  # fmt: skip
FALLBACK_NAME = "there"  # "Hello there," when a subscriber gave no name
_MARKER_RE = re.compile(r"@@WM_[A-Z_]+@@")


@dataclasses.dataclass(frozen=True, slots=True)
class Recipient:
    """One subscriber as the composer sees them; ``unsubscribe_url`` and ``manage_url`` are
    the signed links (a missing manage link falls back to the unsubscribe link)."""

    subscriber_id: int
    email: str
    name: str = ""
    unsubscribe_url: str = ""
    manage_url: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Personal:
    """A recipient's checked values: display name, address, unsubscribe and manage URLs."""

    name: str
    email: str
    unsubscribe_url: str
    manage_url: str = ""

    @classmethod
    def of(cls, recipient: Recipient) -> Personal:
        """Check a recipient; raises :class:`~weekly_mailer.errors.ComposeError` (or its
        subclass ``HeaderInjectionError`` for CR/LF) with one clear line."""
        name = recipient.name
        if not (name.isascii() and name.isprintable()):
            name = clean_display_name(name)
        elif "  " in name or name != name.strip():
            name = " ".join(name.split())
        if len(name) > 200 or "=?" in name:
            name = clean_display_name(name)
        return cls(
            name=name,
            email=check_address(recipient.email),
            unsubscribe_url=check_url("the unsubscribe URL", recipient.unsubscribe_url),
            manage_url=check_url(
                "the manage URL", recipient.manage_url or recipient.unsubscribe_url
            ),
        )

    def body_values(self) -> dict[str, str]:
        """What each body marker becomes (before escaping for HTML)."""
        return {
            ph.NAME: self.name or FALLBACK_NAME,
            ph.EMAIL: self.email,
            ph.UNSUBSCRIBE_URL: self.unsubscribe_url,
            ph.MANAGE_URL: self.manage_url,
        }


def fill(
    template: str, values: Mapping[str, str], *, escape: Callable[[str], str] | None = None
) -> str:
    """Replace every marker in one pass (values are never re-scanned for markers)."""
    if escape is not None:
        values = {k: escape(v) for k, v in values.items()}
    return _MARKER_RE.sub(lambda m: values[m.group(0)], template)


def html_escape(value: str) -> str:
    """HTML-escape a value for text or a double-quoted attribute."""
    return html.escape(value, quote=True)


def quote_phrase(text: str) -> str:
    """A header phrase: quoted when it has specials (non-ASCII is left to RFC 2047)."""
    if re.fullmatch(r"[A-Za-z0-9!#$%&'*+/^_`{|}~ -]*", text) or not text.isascii():
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


FEEDBACK_SENDER = "weekly_mailer"  # the third Feedback-ID field: the sending software


def _feedback_field(text: str) -> str:
    """One Feedback-ID field: letters, digits, ``.``, ``_``, ``-`` (no colon, space or CR/LF)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "-"


def feedback_id(settings: Settings, issue_key: str) -> str:
    """Google's Feedback-ID ``issue:list:weekly_mailer:list_id`` (``a:b:c:SenderId``), so
    Gmail's feedback loop reports complaints per issue and per list."""
    fields = (issue_key, settings.list_name, FEEDBACK_SENDER, settings.list_id)
    return ":".join(_feedback_field(f) for f in fields)


def header_plan(
    settings: Settings, *, subject: str, boundary: str, issue_key: str = ""
) -> list[tuple[str, str | None]]:
    """Every top-level header in order; ``None`` marks a per-recipient value.

    From, Reply-To, To, Subject, Date, Message-ID, List-Id, List-Unsubscribe,
    List-Unsubscribe-Post, Precedence, Feedback-ID (an issue copy: ``issue_key`` given),
    MIME-Version, Content-Type.
    """
    check_single_line("the subject", subject)
    plan: list[tuple[str, str | None]] = [("From", settings.from_address)]
    if settings.reply_to:
        plan.append(("Reply-To", settings.reply_to))
    plan += [
        ("To", None),
        ("Subject", subject),
        ("Date", None),
        ("Message-ID", None),
        ("List-Id", f"{quote_phrase(settings.list_name)} <{settings.list_id}>"),
        ("List-Unsubscribe", None),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Precedence", "bulk"),
        *([("Feedback-ID", feedback_id(settings, issue_key))] if issue_key else []),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    for name, value in plan:
        if value is not None:
            check_single_line(f"the {name} header", value)
    return plan


def build_reference_message(
    settings: Settings,
    *,
    subject: str,
    html_template: str,
    text_template: str,
    boundary: str,
    recipient: Recipient,
    message_id: str,
    date: dt.datetime,
    issue_key: str = "",
) -> EmailMessage:
    """The slow path: a full ``EmailMessage`` for one recipient (serialise with ``POLICY``).

    Same headers, text and HTML as :func:`~weekly_mailer.compose.personalise` produces.
    """
    person = Personal.of(recipient)
    check_message_id(message_id)
    if date.tzinfo is None:
        raise ComposeError("the Date must be timezone-aware")
    per_recipient: dict[str, object] = {
        "To": Address(display_name=person.name, addr_spec=person.email),
        "Date": date,
        "Message-ID": message_id,
        "List-Unsubscribe": list_unsubscribe(settings, person.unsubscribe_url),
    }
    msg = EmailMessage(policy=POLICY)
    plan = header_plan(settings, subject=subject, boundary=boundary, issue_key=issue_key)
    for name, value in plan:
        if name in ("MIME-Version", "Content-Type"):
            continue  # set_content adds these
        msg[name] = per_recipient[name] if value is None else value
    values = person.body_values()
    _set_body(msg, fill(text_template, values), fill(html_template, values, escape=html_escape))
    msg.set_boundary(boundary)
    return msg


def build_confirmation_message(
    settings: Settings,
    *,
    email: str,
    name: str,
    confirm_url: str,
    date: dt.datetime | None = None,
    message_id: str | None = None,
) -> bytes:
    """The sign-up confirmation email (text + HTML alternative), CRLF, ready for SMTP.

    ``name`` is accepted but never used: it was typed into a public form by anyone, so repeating
    it in a mail we send to any address would let strangers relay their text through us. The
    greeting is "Hello," and ``To`` carries the bare address. Every header value is checked
    (CR/LF → ``HeaderInjectionError``). ``date`` defaults to now (UTC).
    """
    from weekly_mailer.compose.render import render_confirmation

    del name  # deliberately left out (see above)
    person = Personal.of(Recipient(0, email, "", confirm_url))
    html_part, text_part = render_confirmation(
        settings, email=person.email, name="", confirm_url=person.unsubscribe_url
    )
    msg = EmailMessage(policy=POLICY)
    msg["From"] = settings.from_address
    if settings.reply_to:
        msg["Reply-To"] = settings.reply_to
    msg["To"] = Address(addr_spec=person.email)
    subject = f"Confirm your subscription to {settings.list_name}"
    check_single_line("the subject", subject)
    msg["Subject"] = subject
    msg["Date"] = date or dt.datetime.now(dt.UTC)
    msg["Message-ID"] = message_id or make_msgid(
        "wm-confirm", domain=domain_of(settings.from_address)
    )
    msg["Auto-Submitted"] = "auto-generated"
    _set_body(msg, text_part, html_part)
    return msg.as_bytes(policy=POLICY)


# Bodies: quoted-printable lines of at most 76 characters (RFC 2045 6.7; spam filters score
# longer ones). Headers keep POLICY's 998, which the serialisation uses.
_BODY_POLICY = POLICY.clone(max_line_length=76)


def _set_body(msg: EmailMessage, text: str, html: str) -> None:
    """The text part, then the HTML alternative, both quoted-printable in 76-character lines."""
    msg.policy = _BODY_POLICY  # the parts are encoded (and inherit the policy) here
    msg.set_content(text, cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    msg.policy = POLICY
    for part in msg.iter_parts():
        del part["MIME-Version"]
        part.policy = POLICY
