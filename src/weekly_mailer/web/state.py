"""What every request of the web app needs (:class:`WebState`) and how a view finds it
(:func:`state`). The blueprints import it from here, not from the package, so the package's
``create_app`` and the blueprints do not import each other."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import current_app

from weekly_mailer.subscribers.confirmations import Queued, Request, request_confirmation
from weekly_mailer.tokens import TokenSigner
from weekly_mailer.web.security import Csrf, SlidingWindowLimiter

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend
    from weekly_mailer.store.db import Database
    from weekly_mailer.store.models import Subscriber
    from weekly_mailer.web.outbox import ConfirmationThread

log = logging.getLogger(__name__)

EXPIRE_EVERY = dt.timedelta(minutes=10)


@dataclasses.dataclass(kw_only=True)
class WebState:
    """What every request needs: settings, database, signer, clock, limiters, and the outbox's
    wake-up call (``on_queued``) for the confirmation e-mails a request queued."""

    settings: Settings
    db: Database
    own_db: bool
    signer: TokenSigner
    csrf: Csrf
    clock: Callable[[], dt.datetime]
    ip_limiter: SlidingWindowLimiter
    backend: Backend | None = None  # the app's own, for its confirmation thread (serve)
    sender: ConfirmationThread | None = None  # serve's confirmation worker thread
    on_queued: Callable[[], None] | None = None  # e.g. wake ``run``'s delivery worker
    _last_expiry: dt.datetime | None = None
    _expiry_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        """An absolute URL under ``base_url`` (never the request's Host header)."""
        return self.settings.base_url.rstrip("/") + path

    def expire_pending_if_due(self, session: Session, now: dt.datetime) -> int:
        """Forget stale pending sign-ups, at most once every ten minutes per process."""
        from weekly_mailer.subscribers import expire_pending

        with self._expiry_lock:
            if self._last_expiry is not None and now - self._last_expiry < EXPIRE_EVERY:
                return 0
            self._last_expiry = now
        ttl = dt.timedelta(days=self.settings.pending_ttl_days)
        return expire_pending(session, older_than=now - ttl)

    def request_confirmation(
        self, session: Session, sub: Subscriber, *, source: str, detail: str, now: dt.datetime
    ) -> Request:
        """Queue a confirmation e-mail in the request's transaction (within the daily limit).
        Call :meth:`queued` once that transaction committed."""
        return request_confirmation(
            session,
            sub,
            per_day=self.settings.confirmations_per_address_per_day,
            source=source,
            detail=detail,
            now=now,
        )

    def queued(self, request: Request | None) -> None:
        """After the commit: have the outbox's worker deliver a new confirmation now."""
        if request is None or request.outcome != Queued.QUEUED:
            return
        if self.sender is not None:
            self.sender.wake()
        if self.on_queued is not None:
            try:
                self.on_queued()
            except Exception:  # the row is committed: a poll delivers it anyway
                log.exception("could not wake the delivery worker")

    def close(self) -> None:
        if self.sender is not None:
            self.sender.close()
        elif self.backend is not None:
            self.backend.close()
        if self.own_db:
            self.db.close()


def state() -> WebState:
    """The :class:`WebState` of the current app."""
    value: WebState = current_app.extensions["weekly_mailer"]
    return value
