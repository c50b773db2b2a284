"""``serve``: the public web app (sign-up, confirm, unsubscribe, archive, feed) under waitress."""

from __future__ import annotations

import signal
from types import FrameType

import click

from weekly_mailer.cli._common import AppContext, cannot_listen, listen_options, pass_app
from weekly_mailer.cli._metrics import expose_metrics
from weekly_mailer.errors import ConfigError


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # waitress closes its sockets and returns


@click.command()
@listen_options("the web app")
@pass_app
def serve(
    app: AppContext, host: str | None, port: int | None, threads: int, trusted_proxy: str | None
) -> None:
    """Serve the subscriber web pages with waitress (a production WSGI server).

    Also the relays' bounce and complaint webhooks, each once its key is set: POST
    /webhooks/ses (ses_topic_arns, sns_certificate_hosts), /webhooks/mailgun
    (mailgun_signing_key), /webhooks/postmark (postmark_webhook_credentials), /webhooks/sendgrid
    (sendgrid_verification_key); docs/web.md, "Webhooks".
    """
    from waitress import create_server

    from weekly_mailer.web import close_app, create_app, server_options, url_prefix

    settings = app.settings
    if not settings.secret_key:  # a configuration error: exit 2, before anything is opened
        raise ConfigError("secret_key is empty: run `weekly-mailer init` or set one")
    expose_metrics(app)
    web = create_app(settings, db=app.db)
    options = server_options(settings, trusted_proxy=trusted_proxy)
    listen_host = host or settings.host
    listen_port = settings.port if port is None else port
    try:
        server = create_server(
            web,
            host=listen_host,
            port=listen_port,
            threads=threads,
            ident="weekly-mailer",
            clear_untrusted_proxy_headers=True,
            **options,
        )
    except OSError as exc:
        close_app(web)
        raise cannot_listen(listen_host, listen_port, exc) from exc
    bound = server.getsockname() if hasattr(server, "getsockname") else (host, port)
    click.echo(
        f"Serving {settings.list_name} on http://{bound[0]}:{bound[1]}{url_prefix(settings)}/ "
        f"(links use {settings.base_url}); Ctrl-C to stop."
    )
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
        close_app(web)
        click.echo("Stopped.")


def register(main: click.Group) -> None:
    main.add_command(serve)
