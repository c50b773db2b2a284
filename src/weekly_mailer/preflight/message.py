"""The message as a reader gets it: this week's issue personalised for a probe reader and signed
as the worker signs it; its HTML under Gmail's clipping size, and the headers mailbox providers
ask for present and covered by the DKIM signature's ``h=``."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage
from typing import TYPE_CHECKING

from weekly_mailer.compose import Recipient, personalise
from weekly_mailer.compose.links import probe_unsubscribe_url
from weekly_mailer.delivery.dkim import DkimSigner
from weekly_mailer.errors import ConfigError, WeeklyMailerError
from weekly_mailer.preflight.model import Check, fail, ok, warn
from weekly_mailer.preflight.records import tags

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

CLIP_BYTES = 102 * 1024  # Gmail shows "[Message clipped]" past this much HTML
REQUIRED = ("List-Unsubscribe", "List-Unsubscribe-Post")
SIGNED_IF_PRESENT = ("Feedback-ID",)


def probe_message(settings: Settings, skeleton: bytes, *, now: dt.datetime) -> bytes:
    """The issue for a probe reader, DKIM-signed when DKIM is configured."""
    reader = Recipient(0, "probe@invalid", "Probe", probe_unsubscribe_url(settings))
    data = personalise(skeleton, reader, message_id="<preflight.probe@invalid>", date=now)
    signer = DkimSigner.from_settings(settings)
    return signer.sign(data) if signer is not None else data


def check_message(settings: Settings, skeleton: bytes, *, now: dt.datetime) -> list[Check]:
    """Size of the HTML (a ``warn`` past :data:`CLIP_BYTES`) and the signed headers."""
    try:
        data = probe_message(settings, skeleton, now=now)
    except ConfigError as exc:
        return [fail("message", f"message: cannot sign this week's issue ({exc})")]
    except WeeklyMailerError as exc:
        return [fail("message", f"message: cannot build this week's issue ({exc})")]
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    out = [_size(message)]
    missing = [h for h in REQUIRED if message[h] is None]
    if missing:
        out.append(fail("message", f"message: {', '.join(missing)} missing (check base_url)"))
        return out
    signatures = message.get_all("DKIM-Signature") or []
    if not signatures:
        out.append(warn("message", "message: not DKIM-signed (see the DKIM line)"))
        return out
    wanted = [*REQUIRED, *(h for h in SIGNED_IF_PRESENT if message[h] is not None)]
    for signature in signatures:
        found = tags(str(signature))
        signed = {h.strip().lower() for h in found.get("h", "").split(":")}
        uncovered = [h for h in wanted if h.lower() not in signed]
        if uncovered:
            out.append(fail("message", f"message: the DKIM signature (s={found.get('s', '?')}) "
                            f"does not cover {', '.join(uncovered)}"))  # fmt: skip
            return out
    out.append(ok("message", f"message: {', '.join(wanted)} present and DKIM-signed"))
    return out


def html_size(message: EmailMessage) -> int:
    """Bytes of the decoded text/html part (what Gmail measures for clipping)."""
    part = message.get_body(preferencelist=("html",))
    if part is None:
        return 0
    content = part.get_content()
    return len(content.encode("utf-8")) if isinstance(content, str) else len(content)


def _size(message: EmailMessage) -> Check:
    size = html_size(message)
    kb = size / 1024
    if size > CLIP_BYTES:
        return warn("message", f"message: this week's HTML is {kb:.0f} KB; Gmail clips beyond "
                    "102 KB (hiding the unsubscribe link): shorten the issue")  # fmt: skip
    return ok("message", f"message: this week's HTML is {kb:.0f} KB (Gmail clips beyond 102 KB)")
