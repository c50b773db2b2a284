"""The fast per-recipient path: the MIME message is serialised once per issue (the skeleton)
and each recipient's values are spliced into the bytes, encoded for where they land.

Skeleton layout: the headers with markers for To, Date, Message-ID and List-Unsubscribe, then a
``multipart/alternative`` body whose two parts (text/plain, then text/html) are quoted-printable.
In the bodies every marker sits between two QP soft line breaks (``=\\r\\n@@WMT_NAME@@=\\r\\n``),
so a value encoded on its own (with its own soft breaks every 76 characters) splices in without
touching the lines around it: every line stays under 998 octets and decodes to exactly the text
the reference path (:func:`~weekly_mailer.compose.message.build_reference_message`) produces.

:func:`personalise_for_smtp` also says whether the message is already in SMTP's wire form but
for the final dot (CRLF line ends only, no line starting with a dot: RFC 5321 4.5.2's
transparency has nothing to do), so the engine need not scan 17 kB per message for it: the
skeleton's pieces are checked once, the recipient's few short values each time.
"""

from __future__ import annotations

import binascii
import datetime as dt
import functools
import re
from email.utils import format_datetime
from typing import TYPE_CHECKING

from weekly_mailer.compose import placeholders as ph
from weekly_mailer.compose.headers import (
    FOLD_AT,
    POLICY,
    check_message_id,
    fold_line,
    format_address,
)
from weekly_mailer.compose.links import list_unsubscribe
from weekly_mailer.compose.message import (
    FALLBACK_NAME,
    Personal,
    Recipient,
    header_plan,
    html_escape,
)
from weekly_mailer.errors import ComposeError

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

CRLF = b"\r\n"
_BODY_MARKER_RE = re.compile(r"(@@WM_[A-Z_]+@@)")
_SKELETON_MARKER_RE = re.compile(rb"(@@WM[A-Z_]*@@)")
_HEADER_MARKERS = {
    "To": ph.TO,
    "Date": ph.DATE,
    "Message-ID": ph.MESSAGE_ID,
    "List-Unsubscribe": ph.LIST_UNSUBSCRIBE,
}
_PART_PREFIX = {"plain": "@@WMT_", "html": "@@WMH_"}


def qp(text: str) -> bytes:
    """Quoted-printable of UTF-8 text, CRLF line ends, lines of at most 76 characters."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", CRLF)


def _encode_part(template: str, subtype: str) -> bytes:
    text = template.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    out: list[bytes] = []
    for i, piece in enumerate(_BODY_MARKER_RE.split(text)):
        if i % 2 == 0:
            out.append(qp(piece))
            continue
        if piece not in ph.BODY_MARKERS:
            raise ComposeError(f"unknown placeholder {piece!r} in the {subtype} template")
        marker = _PART_PREFIX[subtype] + piece[len("@@WM_") :]
        out.append(b"=" + CRLF + marker.encode("ascii") + b"=" + CRLF)
    headers = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii")
    return headers + b"".join(out)


def build_skeleton(
    settings: Settings,
    *,
    subject: str,
    text_template: str,
    html_template: str,
    boundary: str,
    issue_key: str = "",
) -> bytes:
    """Serialise the whole message once, with markers where per-recipient values go."""
    lines: list[bytes] = []
    plan = header_plan(settings, subject=subject, boundary=boundary, issue_key=issue_key)
    for name, value in plan:
        if name == "List-Unsubscribe":
            # "<URL>" plus the static mailto part, if any, each on a line of its own
            # (fold_line); never encoded.
            value = list_unsubscribe(settings, ph.LIST_UNSUBSCRIBE)
            lines.append(f"{fold_line(f'{name}: {value}')}\r\n".encode("ascii"))
        elif value is None:
            lines.append(f"{name}: {_HEADER_MARKERS[name]}\r\n".encode("ascii"))
        else:
            lines.append(POLICY.fold_binary(*POLICY.header_store_parse(name, value)))
    delimiter = b"--" + boundary.encode("ascii")
    return b"".join(
        [
            *lines,
            CRLF,
            delimiter + CRLF,
            _encode_part(text_template, "plain"),
            CRLF + delimiter + CRLF,
            _encode_part(html_template, "html"),
            CRLF + delimiter + b"--" + CRLF,
        ]
    )


# The order of the values personalise() computes; a plan refers to them by position.
_SLOT_ORDER = (
    ph.TO, ph.DATE, ph.MESSAGE_ID, ph.LIST_UNSUBSCRIBE,
    "@@WMT_NAME@@", "@@WMT_EMAIL@@", "@@WMT_UNSUBSCRIBE_URL@@",
    "@@WMH_NAME@@", "@@WMH_EMAIL@@", "@@WMH_UNSUBSCRIBE_URL@@",
    "@@WMT_MANAGE_URL@@", "@@WMH_MANAGE_URL@@",
)  # fmt: skip


def wire_clean(data: bytes) -> bool:
    """Whether ``data`` holds only CRLF line ends (never a bare CR or LF) and no line of it
    starts with a dot, even where it is joined to others: it starts with no dot either."""
    n = data.count(b"\n")
    return (
        data.count(b"\r") == n == data.count(b"\r\n")
        and b"\n." not in data
        and not data.startswith(b".")
    )


@functools.lru_cache(maxsize=16)
def _plan(skeleton: bytes) -> tuple[tuple[bytes, ...], tuple[tuple[int, int], ...], bool]:
    """The skeleton's pieces, where each value goes, and whether its fixed pieces are all
    ``wire_clean`` and it ends with CRLF."""
    pieces = tuple(_SKELETON_MARKER_RE.split(skeleton))
    slots = []
    for i in range(1, len(pieces), 2):
        marker = pieces[i].decode("ascii")
        if marker not in _SLOT_ORDER:
            raise ComposeError(f"the skeleton holds an unknown placeholder {marker!r}")
        slots.append((i, _SLOT_ORDER.index(marker)))
    clean = skeleton.endswith(CRLF) and all(wire_clean(p) for p in pieces[::2])
    return pieces, tuple(slots), clean


@functools.lru_cache(maxsize=64)
def _date_header(date: dt.datetime) -> bytes:
    if date.tzinfo is None:
        raise ComposeError("the Date must be timezone-aware")
    return format_datetime(date).encode("ascii")


def personalise(
    skeleton: bytes,
    recipient: Recipient,
    *,
    message_id: str,
    date: dt.datetime,
) -> bytes:
    """The message for one recipient: the skeleton with their values filled in (CRLF bytes).

    ``message_id`` comes from :func:`~weekly_mailer.compose.make_message_id`; ``date`` must be
    timezone-aware. Raises
    :class:`~weekly_mailer.errors.ComposeError` (``HeaderInjectionError`` for CR/LF) when a value
    cannot be sent safely. The result is ready for DKIM signing and ``backend.send``.
    """
    return personalise_for_smtp(skeleton, recipient, message_id=message_id, date=date)[0]


def personalise_for_smtp(
    skeleton: bytes,
    recipient: Recipient,
    *,
    message_id: str,
    date: dt.datetime,
) -> tuple[bytes, bool]:
    """:func:`personalise`, and whether the message is in SMTP's wire form as it is (see the
    module docstring; ``Envelope.wire_safe``)."""
    pieces, slots, clean = _plan(skeleton)
    person = Personal.of(recipient)
    name = person.name or FALLBACK_NAME
    email = person.email
    url = person.unsubscribe_url
    to = format_address(person.name, email)
    if len(to) > FOLD_AT - 4:  # "To: " and the address: folded where a space allows
        to = fold_line("To: " + to)[4:]
    values = (
        to.encode("utf-8"),
        _date_header(date),
        check_message_id(message_id).encode("ascii"),
        url.encode("ascii"),
        qp(name),
        qp(email),
        qp(url),
        qp(html_escape(name)),
        qp(html_escape(email)),
        qp(html_escape(url)),
        qp(person.manage_url),
        qp(html_escape(person.manage_url)),
    )
    out = list(pieces)
    for index, slot in slots:
        out[index] = values[slot]
    # One scan of the values joined by CRLF: a value starting with a dot shows as "\n.".
    return b"".join(out), clean and wire_clean(CRLF.join(values))
