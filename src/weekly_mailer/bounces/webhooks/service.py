"""The webhooks as a service: :meth:`Webhooks.check` turns one request's bytes into verified
events (or a refusal), :meth:`Webhooks.apply` applies them in the caller's transaction.

Each provider is off until its key is set (``Verdict.OFF``: the web answers 404). Anything not
proven to come from the provider, or already applied, is ``REFUSED`` (403), with the reason in
the log only. The edge (``web/webhooks.py``) parses the request into a :class:`Request`, calls
these two, and presents the verdict.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from weekly_mailer.bounces.webhooks import events as ev
from weekly_mailer.bounces.webhooks import sns, verify
from weekly_mailer.bounces.webhooks.apply import Applied, apply_events, seen

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

log = logging.getLogger(__name__)

PROVIDERS = ("ses", "mailgun", "postmark", "sendgrid")
_SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")


class Verdict(enum.Enum):
    OFF = "off"  # not configured: 404
    REFUSED = "refused"  # not proven genuine, or a replay: 403
    MALFORMED = "malformed"  # genuine, but not the provider's event shape: 400
    UNAVAILABLE = "unavailable"  # an allowed certificate or SubscribeURL unreachable: 503
    ACCEPTED = "accepted"  # 200


@dataclasses.dataclass(frozen=True)
class Request:
    """What the edge read from the HTTP request."""

    body: bytes
    headers: Mapping[str, str]  # names lower-cased by the edge
    remote: str = ""


@dataclasses.dataclass
class Checked:
    """The outcome of :meth:`Webhooks.check`: the verdict, and the events when accepted."""

    verdict: Verdict
    provider: str
    events: list[ev.Event] = dataclasses.field(default_factory=list)
    replay_key: str = ""  # Mailgun's token: refused when seen before
    note: str = ""  # what happened, for the log
    confirmed: bool = False  # an SNS subscription was confirmed


class Webhooks:
    """The four providers' webhooks for one app (it holds the SNS certificate cache)."""

    def __init__(
        self,
        settings: Settings,
        *,
        fetch: Callable[[str], bytes] = sns.https_get,
    ) -> None:
        self.settings = settings
        self._fetch = fetch
        self.certificates = sns.Certificates(fetch)

    def enabled(self, provider: str) -> bool:
        s = self.settings
        return bool(
            {
                "ses": s.ses_topic_arns,
                "mailgun": s.mailgun_signing_key,
                "postmark": s.postmark_webhook_credentials,
                "sendgrid": s.sendgrid_verification_key,
            }.get(provider)
        )

    def check(self, provider: str, request: Request, *, now: dt.datetime) -> Checked:
        """Verify one request and read its events (no database: see :meth:`apply`)."""
        if provider not in PROVIDERS or not self.enabled(provider):
            return Checked(Verdict.OFF, provider)
        handler = getattr(self, f"_check_{provider}")
        try:
            checked: Checked = handler(request, now)
        except ev.PayloadError as exc:
            checked = Checked(Verdict.MALFORMED, provider, note=str(exc))
        if checked.verdict is not Verdict.ACCEPTED:
            log.warning(
                "webhook %s from %s %s: %s", provider, request.remote or "?",
                checked.verdict.value, checked.note,
            )  # fmt: skip
        return checked

    def apply(self, session: Session, checked: Checked, *, now: dt.datetime) -> Checked:
        """Apply accepted events once each; a request all of whose events (or whose Mailgun
        token) were applied before is refused and changes nothing."""
        if checked.verdict is not Verdict.ACCEPTED or not checked.events:
            return checked
        if checked.replay_key and seen(session, checked.provider, checked.replay_key):
            return _refused(checked, f"token {checked.replay_key[:12]}… replayed")
        done: Applied = apply_events(
            session, self.settings, checked.provider, checked.events, now=now
        )
        if done.events == 0:
            return _refused(checked, "every event was applied before (replayed)")
        checked.note = (
            f"{done.events} event(s) applied, {done.replayed} already applied; "
            f"{done.tied} finding(s) tied to a delivery, {done.untied} to none (untrusted)"
        )
        log.info("webhook %s: %s", checked.provider, checked.note)
        return checked

    # --- the providers ------------------------------------------------------------------

    def _check_mailgun(self, request: Request, now: dt.datetime) -> Checked:
        try:
            payload = ev.json_body(request.body)
        except ev.PayloadError:
            return Checked(Verdict.REFUSED, "mailgun", note="no signature (body not JSON)")
        signature = payload.get("signature") if isinstance(payload, dict) else None
        if not isinstance(signature, dict):
            return Checked(Verdict.REFUSED, "mailgun", note="no signature")
        token = str(signature.get("token") or "")
        failed = verify.mailgun(
            self.settings.mailgun_signing_key,
            timestamp=str(signature.get("timestamp") or ""),
            token=token,
            signature=str(signature.get("signature") or ""),
            now=now,
        )
        if failed:
            return Checked(Verdict.REFUSED, "mailgun", note=failed)
        data = payload.get("event-data")
        if not isinstance(data, dict):
            raise ev.PayloadError("no event-data")
        event = ev.mailgun_event(token, data)
        return Checked(Verdict.ACCEPTED, "mailgun", [event], replay_key=event.event_id)

    def _check_postmark(self, request: Request, now: dt.datetime) -> Checked:
        failed = verify.postmark(
            self.settings.postmark_webhook_credentials, request.headers.get("authorization")
        )
        if failed:
            return Checked(Verdict.REFUSED, "postmark", note=failed)
        payload = ev.json_body(request.body)
        if not isinstance(payload, dict):
            raise ev.PayloadError("not a JSON object")
        return Checked(Verdict.ACCEPTED, "postmark", [ev.postmark_event(payload)])

    def _check_sendgrid(self, request: Request, now: dt.datetime) -> Checked:
        failed = verify.sendgrid(
            self.settings.sendgrid_verification_key,
            signature=request.headers.get("x-twilio-email-event-webhook-signature", ""),
            timestamp=request.headers.get("x-twilio-email-event-webhook-timestamp", ""),
            body=request.body,
            now=now,
        )
        if failed:
            return Checked(Verdict.REFUSED, "sendgrid", note=failed)
        events = ev.sendgrid_events(ev.json_body(request.body))
        return Checked(Verdict.ACCEPTED, "sendgrid", events)

    def _check_ses(self, request: Request, now: dt.datetime) -> Checked:
        try:
            message = ev.json_body(request.body)
        except ev.PayloadError:
            return Checked(Verdict.REFUSED, "ses", note="body not JSON")
        if not isinstance(message, dict):
            return Checked(Verdict.REFUSED, "ses", note="not an SNS message")
        # The signed keys are strings; anything else (MessageAttributes) is not looked at.
        message = {k: v for k, v in message.items() if isinstance(v, str)}
        kind = message.get("Type", "")
        if kind not in _SNS_TYPES:
            return Checked(Verdict.REFUSED, "ses", note=f"SNS type {kind[:40]!r}")
        topic = message.get("TopicArn", "")
        if topic not in self.settings.ses_topic_arns:
            note = f"topic {topic[:200]!r} not in ses_topic_arns"
            return Checked(Verdict.REFUSED, "ses", note=note)
        hosts = self.settings.sns_certificate_hosts
        url = message.get("SigningCertURL", "")
        try:
            pem = self.certificates.get(url, hosts)
        except sns.FetchError as exc:
            return Checked(Verdict.UNAVAILABLE, "ses", note=f"signing certificate: {exc}")
        if pem is None:
            return Checked(Verdict.REFUSED, "ses", note=f"SigningCertURL {url[:200]!r} not allowed")
        failed = verify.sns(message, pem, now=now)
        if failed:
            return Checked(Verdict.REFUSED, "ses", note=failed)
        message_id = message.get("MessageId", "")
        if not message_id:
            raise ev.PayloadError("no MessageId")
        if kind == "SubscriptionConfirmation":
            return self._confirm(message)
        if kind == "UnsubscribeConfirmation":
            return Checked(Verdict.ACCEPTED, "ses", note=f"unsubscribed from {topic}")
        return Checked(Verdict.ACCEPTED, "ses", [ev.ses_event(message_id, message["Message"])])

    def _confirm(self, message: Mapping[str, Any]) -> Checked:
        url = str(message.get("SubscribeURL", ""))
        try:
            done = sns.confirm_subscription(url, self.settings.sns_certificate_hosts, self._fetch)
        except sns.FetchError as exc:
            return Checked(Verdict.UNAVAILABLE, "ses", note=f"SubscribeURL: {exc}")
        if not done:
            return Checked(Verdict.REFUSED, "ses", note=f"SubscribeURL {url[:200]!r} not allowed")
        log.info("webhook ses: subscription to %s confirmed", message.get("TopicArn"))
        return Checked(Verdict.ACCEPTED, "ses", note="subscription confirmed", confirmed=True)


def config_notes(settings: Settings) -> list[tuple[str, str]]:
    """What ``doctor`` says about the webhooks: ``(level, line)`` pairs, none when all are off."""
    hooks = Webhooks(settings)
    on = [p for p in PROVIDERS if hooks.enabled(p)]
    if not on:
        return []
    notes = [("ok", f"webhooks on: {', '.join(f'POST /webhooks/{p}' for p in on)}")]
    if "ses" in on and not settings.sns_certificate_hosts:
        notes.append(("warn", "ses_topic_arns is set but sns_certificate_hosts is empty: every "
                              "SNS message will be refused"))  # fmt: skip
    if not settings.base_url.startswith("https://"):
        notes.append(("warn", f"webhooks on but base_url {settings.base_url} is not https: "
                              "their secrets and events cross the network in clear"))  # fmt: skip
    return notes


def _refused(checked: Checked, note: str) -> Checked:
    log.warning("webhook %s refused: %s", checked.provider, note)
    return Checked(Verdict.REFUSED, checked.provider, note=note)
