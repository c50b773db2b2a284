"""The reader's own mail, as bytes: the manage link, a move's confirmation and notice, the data
copy. Plain text (the links on lines of their own), an optional attachment; quoted-printable
lines of at most 76 characters (RFC 2045), headers checked for CR/LF, CRLF line ends."""

from __future__ import annotations

import dataclasses
import datetime as dt
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING

from weekly_mailer.compose.headers import POLICY, check_address, check_single_line

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

BODY_POLICY = POLICY.clone(max_line_length=76)  # the parts' QP lines; headers are POLICY's


@dataclasses.dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    data: bytes
    maintype: str = "application"
    subtype: str = "json"


def build_reader_message(
    settings: Settings,
    *,
    to: str,
    subject: str,
    text: str,
    date: dt.datetime,
    message_id: str,
    attachment: Attachment | None = None,
) -> bytes:
    """One message of the reader's own mail (``To`` is the bare address: no name is repeated)."""
    subject = f"{subject} ({settings.list_name})"
    check_single_line("the subject", subject)
    msg = EmailMessage(policy=BODY_POLICY)
    msg["From"] = settings.from_address
    if settings.reply_to:
        msg["Reply-To"] = settings.reply_to
    msg["To"] = Address(addr_spec=check_address(to))
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    body = text if text.endswith("\n") else text + "\n"
    msg.set_content(body, cte="quoted-printable")
    if attachment is not None:
        msg.add_attachment(
            attachment.data,
            maintype=attachment.maintype,
            subtype=attachment.subtype,
            filename=attachment.filename,
        )
    return msg.as_bytes(policy=POLICY)
