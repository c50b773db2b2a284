"""The public web app: sign-up with double opt-in, confirm and unsubscribe links, archive, feed.

``create_app(settings)`` builds a Flask app; ``weekly-mailer serve`` runs it under waitress.
Blueprints: :mod:`.signup` (``/``, ``/subscribe``), :mod:`.links` (``/confirm/<token>``,
``/unsubscribe/<token>``, ``/resubscribe/<token>``), :mod:`.manage` (the reader's page:
``/manage``, ``/manage/<token>``, ``/manage/move/<token>``), :mod:`.archive` (``/archive``,
``/archive/<issue>``, ``/feed.xml``, ``/healthz``), :mod:`.webhooks` (``/webhooks/<provider>``:
the providers' bounce and complaint events, each off until configured) and :mod:`.security`
(headers, CSRF, size limit, rate limits, error pages). Each request opens its own transaction
at the edge.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask
from jinja2 import ChoiceLoader, FileSystemLoader

from weekly_mailer.clock import utcnow
from weekly_mailer.tokens import TokenSigner
from weekly_mailer.web.security import Csrf, SlidingWindowLimiter
from weekly_mailer.web.state import WebState, state

if TYPE_CHECKING:
    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend
    from weekly_mailer.store.db import Database

__all__ = ["WebState", "close_app", "create_app", "server_options", "state", "url_prefix"]


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    backend: Backend | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    deliver: bool = True,
    on_queued: Callable[[], None] | None = None,
) -> Flask:
    """The web app for these settings.

    ``db`` defaults to a new :class:`~weekly_mailer.store.db.Database` (checked to be migrated);
    ``clock`` (aware UTC) to the real time. Confirmation e-mails are outbox rows, committed with
    the sign-up: with ``deliver`` (``serve``) the app runs a worker thread for them
    (:mod:`.outbox`) on ``backend``, by default the one ``backend_url`` names, resolved once
    here. Without it (``run``, whose own worker delivers them; tests) nothing here sends mail;
    ``on_queued`` is called after each commit that queued one, to wake that worker.
    """
    from weekly_mailer.delivery import resolve_backend
    from weekly_mailer.store.db import Database
    from weekly_mailer.web.archive import bp as archive_bp
    from weekly_mailer.web.links import bp as links_bp
    from weekly_mailer.web.manage import bp as manage_bp
    from weekly_mailer.web.observe import install as observe
    from weekly_mailer.web.outbox import ConfirmationThread
    from weekly_mailer.web.proofs import bp as proofs_bp
    from weekly_mailer.web.security import install
    from weekly_mailer.web.signup import bp as signup_bp
    from weekly_mailer.web.webhooks import bp as webhooks_bp

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
        ip_limiter=SlidingWindowLimiter(
            settings.signup_per_ip_per_hour, dt.timedelta(hours=1), now
        ),
        backend=backend,
        on_queued=on_queued,
    )
    if deliver:
        sender = backend if backend is not None else resolve_backend(settings)
        web.sender = ConfirmationThread(database.sessions, settings, sender, clock=now).start()

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
    observe(app)
    app.register_blueprint(signup_bp)
    app.register_blueprint(links_bp)
    app.register_blueprint(manage_bp)
    app.register_blueprint(archive_bp)
    app.register_blueprint(proofs_bp)
    app.register_blueprint(webhooks_bp)
    return app


def url_prefix(settings: Settings) -> str:
    """The path part of ``base_url`` without its trailing slash: ``/news`` for
    ``https://x.org/news/``, ``""`` when the site is at the root."""
    return urlsplit(settings.base_url).path.rstrip("/")


# Waitress's defaults (100 connections, select()) let 105 clients that dribble a header line
# every few seconds lock everyone else out. More connections (poll(), so past select's 1,024
# descriptors) and a shorter idle timeout keep a handful of slow clients from starving the
# server; more than a handful is a reverse proxy's job (docs/operations.md).
CONNECTION_OPTIONS: dict[str, str] = {
    "connection_limit": "500",
    "asyncore_use_poll": "true",
    "channel_timeout": "30",
    "cleanup_interval": "10",
}


def server_options(settings: Settings, *, trusted_proxy: str | None = None) -> dict[str, str]:
    """Options for waitress so that the app answers under ``base_url``'s path, and believes
    X-Forwarded-For/-Proto only from ``trusted_proxy``.

    With ``url_prefix`` waitress sets ``SCRIPT_NAME``, so the pages' own links and forms
    (``url_for``) carry the prefix the e-mail links already have. Pass these to every
    ``waitress.create_server`` that serves :func:`create_app`.
    """
    prefix = url_prefix(settings)
    options = dict(CONNECTION_OPTIONS)
    if prefix:
        options["url_prefix"] = prefix
    if trusted_proxy:
        options["trusted_proxy"] = trusted_proxy
        options["trusted_proxy_headers"] = "x-forwarded-for x-forwarded-proto"
    return options


def close_app(app: Flask) -> None:
    """Stop the confirmation thread (the message in flight is recorded, the other claimed rows
    go back to the queue), close the backend and (if the app opened it) the database."""
    web: WebState = app.extensions["weekly_mailer"]
    web.close()
