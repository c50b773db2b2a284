"""``schedule`` and ``run``: the weekly send times, and the daemon that keeps them."""

from __future__ import annotations

import datetime as dt
import logging

import click

from weekly_mailer.cli._common import AppContext, listen_options, pass_app
from weekly_mailer.cli._metrics import expose_metrics


@click.command()
@click.option(
    "--count",
    "-n",
    type=click.IntRange(min=1, max=1000),
    default=5,
    show_default=True,
    help="How many upcoming send times to print.",
)
@pass_app
def schedule(app: AppContext, count: int) -> None:
    """Print the next COUNT send times: local time with its UTC offset, then UTC."""
    from weekly_mailer.scheduler import WeeklySchedule, format_fire_time

    settings = app.settings
    weekly = WeeklySchedule.from_settings(settings)
    now = dt.datetime.now(dt.UTC)
    for fire in weekly.fire_times(now, count):
        click.echo(format_fire_time(fire, settings.zone))


@click.command()
@listen_options("the web app")
@click.option("--no-web", is_flag=True, help="Run the scheduler and the worker only.")
@click.option(
    "--check-interval",
    type=click.FloatRange(min=0.5),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How often a standby tries to lead and the catch-up check runs.",
)
@pass_app
def run(
    app: AppContext,
    host: str | None,
    port: int | None,
    threads: int,
    trusted_proxy: str | None,
    no_web: bool,
    check_interval: float,
) -> None:
    """Run the daemon: the weekly send, the web app and the delivery runner in one process.

    It delivers with `processes` delivery processes (default: one per core), exactly like
    `send`, and waits out a database outage (one line in the log) as every command does.

    At the scheduled time (settings.schedule in settings.timezone) it sends that week's issue;
    after downtime it catches up within grace_hours, else records the week (and any earlier
    week it was down for) as missed. A fresh installation never catches up a send time that
    passed before it first started: its first issue goes out at the next send time. The
    database guarantees one issue per week however many daemons run. SIGTERM or SIGINT stop
    it cleanly. See docs/operations.md.

    With editors set, it mails each editor a [Proof] of the week's issue proof_hours before
    the send (again whenever the content changes); with approval = required the week waits
    for `issues approve` (or the proof's approve link), with approval = veto it goes unless
    vetoed (docs/operations.md, "The editor's week").

    With bounce_mailbox set, it reads that mailbox as `bounces fetch` does: at once when IMAP
    IDLE says new mail came, else every bounce_poll_seconds; a mailbox it cannot reach is one
    line in the log, tried again later. Its web app also takes the providers' bounce and
    complaint webhooks (/webhooks/ses, /webhooks/mailgun, /webhooks/postmark,
    /webhooks/sendgrid), each once its key is set, as `serve` does (docs/web.md, "Webhooks").

    The relay's pace: at most daily_quota messages in any rolling 24 hours, and a warm-up of a
    new sending domain, warmup_start issue copies the first sending day and warmup_factor times
    more each sending day after, counted in the database across every process and worker; what
    waits goes later (`issues show` gives the expected finish).
    """
    import threading

    from weekly_mailer.clock import utcnow
    from weekly_mailer.delivery import resolve_backend
    from weekly_mailer.delivery.processes import process_count
    from weekly_mailer.delivery.runner import Runner
    from weekly_mailer.scheduler.daemon import Daemon, ProgressLog, WebServer
    from weekly_mailer.scheduler.job import WeeklyJob
    from weekly_mailer.scheduler.leader import leadership_for
    from weekly_mailer.scheduler.proof_job import ProofJob

    settings = app.settings
    if settings.log_level.upper() != "DEBUG":  # its INFO says "running job" every minute
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    db = app.db
    backend = resolve_backend(settings)  # an unknown scheme fails before anything starts
    expose_metrics(app)
    # The delivery runner, with `processes` delivery processes exactly like `send`.
    delivery = Runner(
        settings, db.sessions, backend, processes=process_count(settings, backend),
        stop=threading.Event(), on_progress=ProgressLog(),
        on_start=lambda owners: logging.getLogger("weekly_mailer.daemon").info(
            "delivery started: %s", ", ".join(owners)),
    )  # fmt: skip
    job = WeeklyJob(
        settings,
        db.sessions,
        clock=utcnow,
        leadership=leadership_for(db.engine),
    )
    job.on_enqueued = delivery.wake
    proof_job = ProofJob(
        settings, db.sessions, clock=utcnow, on_queued=delivery.wake, leadership=job.leadership
    )
    web = None
    web_app = None
    if not no_web:
        from weekly_mailer.cli._common import cannot_listen
        from weekly_mailer.web import close_app, create_app, server_options

        web_app = create_app(settings, db=db, deliver=False, on_queued=delivery.wake)
        listen_host, listen_port = host or settings.host, settings.port if port is None else port
        try:
            web = WebServer(
                web_app,
                host=listen_host,
                port=listen_port,
                threads=threads,
                **server_options(settings, trusted_proxy=trusted_proxy),
            )
        except OSError as exc:
            close_app(web_app)
            backend.close()
            raise cannot_listen(listen_host, listen_port, exc) from exc

    def closing() -> None:
        backend.close()
        if web_app is not None:
            close_app(web_app)

    if not settings.postal_address:  # and each week, when the job sends (scheduler.job)
        from weekly_mailer.config_checks import POSTAL_ADDRESS_MISSING

        logging.getLogger("weekly_mailer.daemon").warning(POSTAL_ADDRESS_MISSING)

    mailbox = None
    if settings.bounce_mailbox:  # reports read as they arrive (bounces fetch, in a thread)
        from weekly_mailer.scheduler.mailbox_poll import MailboxPoller

        mailbox = MailboxPoller(settings, db.sessions, clock=utcnow)
    daemon = Daemon(
        job, delivery=delivery, web=web, on_stop=closing, reconcile_seconds=check_interval,
        proofs=proof_job, mailbox=mailbox,
    )  # fmt: skip
    click.echo(
        f"weekly-mailer daemon: sends {job.schedule.describe()}"
        + (f", web app on {web.url}" if web is not None else "")
        + "; SIGTERM or Ctrl-C to stop.",
        err=True,
    )
    daemon.run_until_signalled()


def register(main: click.Group) -> None:
    main.add_command(schedule)
    main.add_command(run)
