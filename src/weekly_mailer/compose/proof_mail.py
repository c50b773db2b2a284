"""An editor's proof as bytes: ``[Proof]`` and the issue's subject, a plain-text summary at the
top, then the issue exactly as a reader gets it (its ``multipart/alternative`` part, unchanged),
in one ``multipart/mixed`` message."""

from __future__ import annotations

import datetime as dt
import email
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING

from weekly_mailer.compose.headers import POLICY, check_address, check_single_line
from weekly_mailer.compose.reader_mail import BODY_POLICY

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

PROOF_TAG = "[Proof]"


def build_proof_message(
    settings: Settings,
    *,
    to: str,
    subject: str,
    summary: str,
    copy: bytes,
    date: dt.datetime,
    message_id: str,
) -> bytes:
    """The proof for one editor: ``copy`` is the issue personalised for them."""
    full_subject = f"{PROOF_TAG} {subject}"
    check_single_line("the subject", full_subject)
    msg = EmailMessage(policy=BODY_POLICY)
    msg["From"] = settings.from_address
    msg["To"] = Address(addr_spec=check_address(to))
    msg["Subject"] = full_subject
    msg["Date"] = date
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(summary if summary.endswith("\n") else summary + "\n", cte="quoted-printable")
    msg.make_mixed()
    issue = email.message_from_bytes(copy, policy=POLICY)
    for name in list(issue.keys()):
        if not name.lower().startswith("content-"):
            del issue[name]
    msg.attach(issue)
    return msg.as_bytes(policy=POLICY)
