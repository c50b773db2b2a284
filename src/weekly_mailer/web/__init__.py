"""The public web app: sign-up with double opt-in, confirm and unsubscribe links, archive, feed.

``create_app(settings)`` builds a Flask app; ``weekly-mailer serve`` runs it under waitress.
Blueprints: :mod:`.signup` (``/``, ``/subscribe``), :mod:`.links` (``/confirm/<token>``,
``/unsubscribe/<token>``, ``/resubscribe/<token>``), :mod:`.archive` (``/archive``,
``/archive/<issue>``, ``/feed.xml``, ``/healthz``) and :mod:`.security` (headers, CSRF, size
limit, rate limits, error pages). Each request opens its own transaction at the edge.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, current_app
from jinja2 import ChoiceLoader, FileSystemLoader

from weekly_mailer.clock import utcnow
from weekly_mailer.tokens import Purpose, TokenSigner
from weekly_mailer.web.mailer import ConfirmationJob, ConfirmationMailer
from weekly_mailer.web.security import Csrf, SlidingWindowLimiter

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend
    from weekly_mailer.store.db import Database
    from weekly_mailer.store.models import Subscriber

__all__ = ["WebState", "close_app", "create_app", "server_options", "state", "url_prefix"]

EXPIRE_EVERY = dt.timedelta(minutes=10)


@dataclasses.dataclass(kw_only=True)
class WebState:
    """What every request needs: settings, database, signer, clock, mailer and limiters."""

    settings: Settings
    db: Database
    own_db: bool
    signer: TokenSigner
    csrf: Csrf
    clock: Callable[[], dt.datetime]
    mailer: ConfirmationMailer
    ip_limiter: SlidingWindowLimiter
    _last_expiry: dt.datetime | None = None
    _expiry_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        """An absolute URL under ``base_url`` (never the request's Host header)."""
        return self.settings.base_url.rstrip("/") + path

    def confirm_url(self, subscriber_id: int, email_key: str) -> str:
        return self.url("/confirm/" + self.signer.make(Purpose.CONFIRM, subscriber_id, email_key))

    def expire_pending_if_due(self, session: Session, now: dt.datetime) -> int:
        """Forget stale pending sign-ups, at most once every ten minutes per process."""
        from weekly_mailer.subscribers import expire_pending

        with self._expiry_lock:
            if self._last_expiry is not None and now - self._last_expiry < EXPIRE_EVERY:
                return 0
            self._last_expiry = now
        ttl = dt.timedelta(days=self.settings.pending_ttl_days)
        return expire_pending(session, older_than=now - ttl)

    def confirmation_job(
        self, session: Session, sub: Subscriber, *, source: str, detail: str, now: dt.datetime
    ) -> ConfirmationJob:
        """Count a confirmation e-mail towards the daily limit; the job that sends it."""
        from weekly_mailer.subscribers import optin

        previous = sub.confirmation_sent_at
        event_id = optin.note_confirmation_sent(session, sub, source=source, detail=detail, now=now)
        return ConfirmationJob(
            sub.email,
            sub.name,
            self.confirm_url(sub.id, sub.email_key),
            subscriber_id=sub.id,
            event_id=event_id,
            sent_at=now,
            previous_sent_at=previous,
        )

    def confirmation_not_sent(self, job: ConfirmationJob, reason: str) -> None:
        """The mailer gave up on ``job``: the person may ask for another confirmation at once."""
        from weekly_mailer.subscribers import optin

        if job.subscriber_id is None or job.event_id is None or job.sent_at is None:
            return
        with self.db.sessions.begin() as session:
            optin.note_confirmation_failed(
                session,
                job.subscriber_id,
                event_id=job.event_id,
                sent_at=job.sent_at,
                previous_sent_at=job.previous_sent_at,
                reason=reason,
                now=self.clock(),
            )

    def close(self) -> None:
        self.mailer.close()
        if self.own_db:
            self.db.close()


def state() -> WebState:
    """The :class:`WebState` of the current app."""
    value: WebState = current_app.extensions["weekly_mailer"]
    return value


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    backend: Backend | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> Flask:
    """The web app for these settings.

    ``db`` defaults to a new :class:`~weekly_mailer.store.db.Database` (checked to be migrated);
    ``backend`` (for confirmation e-mails) to the one ``backend_url`` names, resolved once here;
    ``clock`` (aware UTC) to the real time.
    """
    from weekly_mailer.delivery import resolve_backend
    from weekly_mailer.store.db import Database
    from weekly_mailer.web.archive import bp as archive_bp
    from weekly_mailer.web.links import bp as links_bp
    from weekly_mailer.web.security import install
    from weekly_mailer.web.signup import bp as signup_bp

    signer = TokenSigner(settings.secret_key)  # refuses an empty secret
    own_db = db is None
    database = db if db is not None else Database(settings)
    now = clock or utcnow
    web = WebState(
        settings=settings,
        db=database,
        own_db=own_db,
        signer=signer,
        csrf=Csrf(settings.secret_key),
        clock=now,
        mailer=ConfirmationMailer(
            settings, backend if backend is not None else resolve_backend(settings)
        ),
        ip_limiter=SlidingWindowLimiter(
            settings.signup_per_ip_per_hour, dt.timedelta(hours=1), now
        ),
    )

    web.mailer.on_give_up = web.confirmation_not_sent

    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.secret_key, JSON_SORT_KEYS=False)
    app.extensions["weekly_mailer"] = web
    if settings.templates_dir and (Path(settings.templates_dir) / "web").is_dir():
        assert app.jinja_loader is not None
        app.jinja_loader = ChoiceLoader(
            [FileSystemLoader(str(Path(settings.templates_dir) / "web")), app.jinja_loader]
        )

    @app.context_processor
    def _site() -> dict[str, Any]:
        return {
            "list_name": settings.list_name,
            "postal_address": settings.postal_address,
            "base_url": settings.base_url.rstrip("/"),
        }

    install(app, settings)
    app.register_blueprint(signup_bp)
    app.register_blueprint(links_bp)
    app.register_blueprint(archive_bp)
    return app


def url_prefix(settings: Settings) -> str:
    """The path part of ``base_url`` without its trailing slash: ``/news`` for
    ``https://x.org/news/``, ``""`` when the site is at the root."""
    return urlsplit(settings.base_url).path.rstrip("/")


def server_options(settings: Settings, *, trusted_proxy: str | None = None) -> dict[str, str]:
    """Options for waitress so that the app answers under ``base_url``'s path, and believes
    X-Forwarded-For/-Proto only from ``trusted_proxy``.

    With ``url_prefix`` waitress sets ``SCRIPT_NAME``, so the pages' own links and forms
    (``url_for``) carry the prefix the e-mail links already have. Pass these to every
    ``waitress.create_server`` that serves :func:`create_app`.
    """
    prefix = url_prefix(settings)
    options = {"url_prefix": prefix} if prefix else {}
    if trusted_proxy:
        options["trusted_proxy"] = trusted_proxy
        options["trusted_proxy_headers"] = "x-forwarded-for x-forwarded-proto"
    return options


def close_app(app: Flask) -> None:
    """Send queued confirmation e-mails, close the backend and (if the app opened it) the DB."""
    web: WebState = app.extensions["weekly_mailer"]
    web.close()
