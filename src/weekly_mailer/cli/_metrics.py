"""The metrics listener of ``send``, ``worker``, ``serve`` and ``run`` (``metrics_address``)."""

from __future__ import annotations

import click

from weekly_mailer.cli._common import AppContext


def expose_metrics(app: AppContext, *, linger: bool = False) -> None:
    """Serve ``/metrics`` on ``metrics_address`` (when set) until the command ends; a port that
    cannot be bound is a one-line error before anything else starts.

    With ``linger`` (``send``), the listener stays up after the work for one last scrape, at
    most ``metrics_linger_seconds``, so Prometheus sees the final counts of a short run.
    """
    settings = app.settings
    if not settings.metrics_address:
        return
    from weekly_mailer import metrics
    from weekly_mailer.issues.health import issue_health
    from weekly_mailer.store.gauges import DatabaseCollector

    collector = DatabaseCollector(app.db.engine, health=issue_health)
    listener = metrics.start_listener(settings.metrics_address, [collector])
    click.echo(f"Metrics on http://{settings.metrics_address}/metrics", err=True)

    def close() -> None:
        collector.expire()  # a last scrape reads the final state, not a cached one
        wait = settings.metrics_linger_seconds if linger else 0.0
        if wait > 0:
            click.echo(f"Waiting up to {wait:g}s for a last metrics scrape.", err=True)
            listener.wait_for_scrape(wait)
        listener.close()
        metrics.end_owned()  # the delivery processes' directory, if they ran

    click.get_current_context().call_on_close(close)
