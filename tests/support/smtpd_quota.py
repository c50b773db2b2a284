"""A relay with a sending rate, like Amazon SES's: aiosmtpd that takes ``rate`` messages a
second and answers a throttling reply above it (``454 Throttling failure: Maximum sending rate
exceeded.``), at RCPT, at the DATA command or after the final dot (``stage``).

The rate is a token bucket of ``rate`` tokens refilled at ``rate`` a second (a second's worth of
burst, as SES allows). A message accepted takes a token; one refused takes none. Every
acceptance's time is kept (``accepted_at``), so a test can check the rate the relay saw.
``ThrottlingRelay(replies=…)`` instead throttles the first message of each listed recipient
once with that reply, then accepts it: one throttling reply of each kind, each stage.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.smtpd import Received, SMTPServer

SES_THROTTLE = "454 Throttling failure: Maximum sending rate exceeded."


class _Bucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


class _GatedSMTP(SMTP):
    """aiosmtpd's SMTP, asking the handler before it answers 354 to DATA."""

    async def smtp_DATA(self, arg: str) -> None:
        handler: Any = self.event_handler
        if self.envelope is not None and self.envelope.rcpt_tos and not arg:
            reply = handler.before_data(self.envelope)
            if reply is not None:
                await self.push(reply)
                return
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _GatedSMTP(self.handler, **self.SMTP_kwargs)


class _RelayHandler:
    def __init__(self, relay: ThrottlingRelay) -> None:
        self.relay = relay

    def _verdict(self, rcpt: str, stage: str) -> str | None:
        relay = self.relay
        if relay.replies:
            reply = relay.replies.get(rcpt.lower())
            with relay.lock:
                if reply is None or stage != relay.stage or rcpt.lower() in relay.throttled_once:
                    return None
                relay.throttled_once.add(rcpt.lower())
                relay.throttled += 1
            return reply
        if stage != relay.stage:
            return None
        if relay.bucket is not None and not relay.bucket.take():
            with relay.lock:
                relay.throttled += 1
            return relay.reply
        return None

    async def handle_RCPT(
        self, srv: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self._verdict(address, "rcpt")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def before_data(self, envelope: Envelope) -> str | None:
        return self._verdict(envelope.rcpt_tos[0], "data")

    async def handle_DATA(self, srv: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._verdict(envelope.rcpt_tos[0], "dot")
        if reply is not None:
            return reply
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        with self.relay.lock:
            self.relay.messages.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), content)
            )
            self.relay.accepted_at.append(time.monotonic())
        return "250 2.0.0 Ok: queued"


class ThrottlingRelay(SMTPServer):
    """See the module docstring; a context manager like :class:`SMTPServer`."""

    def __init__(
        self,
        *,
        rate: float | None = None,
        reply: str = SES_THROTTLE,
        stage: str = "rcpt",
        replies: dict[str, str] | None = None,
    ) -> None:
        assert stage in ("rcpt", "data", "dot")
        self.bucket = None if rate is None else _Bucket(rate)
        self.reply = reply
        self.stage = stage
        self.replies = {k.lower(): v for k, v in (replies or {}).items()}
        self.throttled_once: set[str] = set()
        self.throttled = 0
        self.accepted_at: list[float] = []
        super().__init__()

    def _controller(self) -> Controller:
        return _Controller(
            _RelayHandler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10
        )

    def most_in_one_second(self) -> int:
        """The most acceptances in any one second."""
        times = sorted(self.accepted_at)
        best, j = 0, 0
        for i, start in enumerate(times):
            while j < len(times) and times[j] < start + 1.0:
                j += 1
            best = max(best, j - i)
        return best
