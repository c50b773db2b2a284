"""``subscribers``: add, import, export, list, count, remove, unsubscribe, erase."""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path
from typing import BinaryIO

import click

from weekly_mailer.cli._common import AppContext, pass_app
from weekly_mailer.errors import SubscriberError, WeeklyMailerError


class _Statuses(click.Choice[str]):
    """The values of ``SubscriberStatus``, read from the store when first wanted: `--help`
    imports this module, and the models (SQLAlchemy) only once a command runs."""

    def __init__(self) -> None:
        self.case_sensitive = True

    @functools.cached_property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        from weekly_mailer.store.models import SubscriberStatus

        return tuple(s.value for s in SubscriberStatus)


STATUS_CHOICE = _Statuses()


@click.group()
def subscribers() -> None:
    """Manage subscribers from the command line."""


@subscribers.command()
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option("--confirmed", is_flag=True, help="Add as active (you hold their consent).")
@click.option("--resubscribe", is_flag=True, help="Re-activate an address that left or bounced.")
@click.option(
    "--no-email",
    is_flag=True,
    help="Do not e-mail the confirmation link to a pending subscriber now.",
)
@pass_app
def add(
    app: AppContext, email: str, name: str, confirmed: bool, resubscribe: bool, no_email: bool
) -> None:
    """Add one subscriber.

    Without --confirmed the subscriber is pending and is e-mailed the confirmation link (double
    opt-in); they get issues once they confirm. Use --confirmed only when you hold their consent.
    """
    from weekly_mailer.subscribers.signup import Door, sign_up

    # One service call, one transaction: the subscriber and their confirmation e-mail's row.
    with app.db.sessions.begin() as session:
        done = sign_up(
            session,
            email,
            door=Door.OPERATOR,
            name=name,
            confirmed=confirmed,
            resubscribe=resubscribe,
            send_link=not no_email,
            per_day=app.settings.confirmations_per_address_per_day,
            now=app.clock(),
        )
        assert done.subscriber is not None  # the operator's door always has one
        address, status = done.subscriber.email, done.subscriber.status
    click.echo(f"Added {address} ({status}).")
    if done.confirmation is None:
        return
    asked = done.confirmation
    rows = [] if asked.delivery_id is None else [asked.delivery_id]
    try:
        failed = _deliver_confirmations(app, rows, limited=int(not rows), emails=[address])
    except WeeklyMailerError as exc:
        click.echo(f"Could not send the confirmation e-mail: {exc}", err=True)
        failed = 1
    if failed:
        click.echo(
            "The subscriber stays pending and the e-mail queued: a running `weekly-mailer "
            "serve` (or `run`) sends it once the mail server answers; if neither runs, send "
            "it then with `weekly-mailer subscribers send-confirmations`.",
            err=True,
        )
        sys.exit(1)


def _send_confirmations(app: AppContext, emails: list[str] | None) -> int:
    """Queue confirmation e-mails (within the daily limit), deliver them now; returns how many
    failed. The rows stay in the outbox, so one not delivered now is retried by ``worker``,
    ``run`` or ``serve``."""
    from weekly_mailer.subscribers import confirmations

    limited = 0
    rows: list[int] = []
    with app.db.sessions.begin() as session:
        now = app.clock()
        for sub in confirmations.pending_subscribers(session, emails):
            asked = confirmations.request_confirmation(
                session,
                sub,
                per_day=app.settings.confirmations_per_address_per_day,
                source="cli",
                now=now,
            )
            if asked.delivery_id is None:
                limited += 1
            else:
                rows.append(asked.delivery_id)
    return _deliver_confirmations(app, rows, limited=limited, emails=emails)


def _deliver_confirmations(
    app: AppContext, rows: list[int], *, limited: int, emails: list[str] | None
) -> int:
    """Deliver the queued confirmation rows now and say how it went; returns how many failed."""
    from weekly_mailer.delivery import resolve_backend
    from weekly_mailer.delivery.run import deliver_confirmations
    from weekly_mailer.store.models import DeliveryStatus
    from weekly_mailer.subscribers import confirmations

    if rows:
        with resolve_backend(app.settings) as backend:
            deliver_confirmations(app.db.sessions, app.settings, backend)
    with app.db.sessions.begin() as session:
        states = confirmations.row_states(session, rows)
    sent = sum(1 for r in states if r.status == DeliveryStatus.SENT.value)
    failed = [r for r in states if r.status != DeliveryStatus.SENT.value]
    for r in failed:
        reason = r.error or f"not sent yet ({r.status})"
        click.echo(f"Could not send the confirmation e-mail to {r.email}: {reason}", err=True)
    if emails is not None and len(emails) == 1:
        if sent:
            click.echo(f"Sent the confirmation link to {emails[0].strip()}.")
        elif limited:
            click.echo("A confirmation link was sent to this address today already.")
    else:
        click.echo(
            f"Confirmation e-mails: {sent} sent, {limited} already sent "
            f"today, {len(failed)} failed."
        )
    return len(failed)


@subscribers.command("send-confirmations")
@click.argument("emails", nargs=-1)
@pass_app
def send_confirmations_cmd(app: AppContext, emails: tuple[str, ...]) -> None:
    """E-mail the confirmation link to pending subscribers (all of them, or EMAILS).

    Each address gets at most confirmations_per_address_per_day of them. Exits 1 when any
    could not be sent.
    """
    if _send_confirmations(app, list(emails) if emails else None):
        sys.exit(1)


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--confirmed", is_flag=True, help="Import as active (you hold their consent).")
@click.option(
    "--resubscribe",
    is_flag=True,
    help="Re-activate addresses that unsubscribed or bounced (never done otherwise).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary line, not each bad row.")
@pass_app
def import_(app: AppContext, file: str, confirmed: bool, resubscribe: bool, quiet: bool) -> None:
    """Import subscribers from a CSV (email, optional name) or a JSON export.

    Each bad row is reported with its line number and reason; the good rows are kept.
    Importing the same file twice adds nothing. Addresses that unsubscribed stay unsubscribed
    unless --resubscribe is given. Exits 1 when any row was bad.
    """
    from weekly_mailer import subscribers as subs

    if file == "-":
        stream: BinaryIO = sys.stdin.buffer
        name = "stdin"
    else:
        path = Path(file)
        try:
            stream = path.open("rb")
        except FileNotFoundError as exc:
            raise SubscriberError(f"{file}: no such file") from exc
        except OSError as exc:
            raise SubscriberError(f"{file}: cannot read it ({exc.strerror})") from exc
        name = path.name
    # Chunk by chunk, each committed: memory stays flat, and a run stopped half-way keeps what
    # it wrote (running it again is safe: those rows are "already known").
    importer = subs.Importer(
        confirmed=confirmed,
        resubscribe=resubscribe,
        source=subs.import_source(name),
        erased_key=app.settings.secret_key,  # erased addresses stay off without --resubscribe
    )
    bad = 0
    with stream, contextlib.closing(subs.read_chunks(stream, filename=name)) as chunks:
        try:
            for chunk in chunks:
                with app.db.sessions.begin() as session:
                    importer.apply(session, chunk.rows)
                bad += len(chunk.errors)
                for err in [] if quiet else chunk.errors:
                    click.echo(f"{file}:{err.where}: {err.reason}", err=True)
        except OSError as exc:
            raise SubscriberError(f"{file}: cannot read it ({exc.strerror})") from exc
    report = importer.report
    parts = [f"{report.added} added"]
    if report.activated:
        parts.append(f"{report.activated} confirmed")
    if report.resubscribed:
        parts.append(f"{report.resubscribed} resubscribed")
    parts.append(f"{report.unchanged} already known")
    if report.suppressed:
        parts.append(f"{report.suppressed} now unsubscribed, bounced or complained (from the file)")
    if report.kept_unsubscribed:
        parts.append(f"{report.kept_unsubscribed} kept unsubscribed (use --resubscribe)")
    if report.duplicates:
        parts.append(f"{report.duplicates} duplicate rows")
    parts.append(f"{bad} bad rows")
    click.echo("Imported: " + ", ".join(parts) + ".")
    if report.added and not confirmed and not quiet:
        click.echo(
            "New subscribers are pending: e-mail them the confirmation link with "
            "`weekly-mailer subscribers send-confirmations` (or import with --confirmed if you "
            "hold their consent)."
        )
    if bad:
        sys.exit(1)


@subscribers.command()
@click.option("--status", type=STATUS_CHOICE, default=None, help="Only this status.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="CSV (a header row, then one subscriber a row) or a JSON list of objects.",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), default=None, help="File (default stdout)."
)
@pass_app
def export(app: AppContext, status: str | None, fmt: str, output: str | None) -> None:
    """Write subscribers as CSV or JSON (which `import` reads back)."""
    from weekly_mailer import subscribers as subs

    with app.db.sessions.begin() as session:
        if output:
            try:
                out = open(output, "w", encoding="utf-8", newline="")
            except OSError as exc:
                raise SubscriberError(f"{output}: cannot write it ({exc.strerror})") from exc
            with out:
                n = subs.write_export(session, out, fmt=fmt, status=status)
            click.echo(f"Exported {n} subscribers to {output}.", err=True)
        else:
            subs.write_export(session, sys.stdout, fmt=fmt, status=status)


@subscribers.command("list")
@click.option("--status", type=STATUS_CHOICE, default=None, help="Only this status.")
@click.option("--search", default=None, help="Only addresses containing this text.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many.")
@pass_app
def list_(app: AppContext, status: str | None, search: str | None, limit: int | None) -> None:
    """List subscribers: address, status, name, when they joined (and a pause, if any)."""
    from weekly_mailer import subscribers as subs
    from weekly_mailer.clock import utcnow
    from weekly_mailer.subscribers.reader import pause_label

    now = utcnow()
    with app.db.sessions.begin() as session:
        for sub in subs.iter_subscribers(session, status=status, search=search, limit=limit):
            paused = pause_label(sub, now=now)
            click.echo(
                f"{sub.email}\t{sub.status}\t{sub.name}\t{sub.created_at:%Y-%m-%d}"
                + (f"\t{paused}" if paused else "")
            )


@subscribers.command()
@click.option("--status", type=STATUS_CHOICE, default=None, help="Only this status.")
@click.option(
    "--paused", is_flag=True, help="Only active readers who paused (the weekly send skips them)."
)
@pass_app
def count(app: AppContext, status: str | None, paused: bool) -> None:
    """Print the number of subscribers (with --status, of that status; with --paused, of the
    active readers who paused their subscription)."""
    from weekly_mailer import subscribers as subs
    from weekly_mailer.clock import utcnow
    from weekly_mailer.subscribers.reader import count_paused

    with app.db.sessions.begin() as session:
        if paused:
            click.echo(count_paused(session, now=utcnow()))
        else:
            click.echo(subs.count(session, status=status))


@subscribers.command()
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def remove(app: AppContext, email: str, yes: bool) -> None:
    """Delete a subscriber and their history (for erasure requests).

    To stop mail but remember that the address left, use `unsubscribe` instead.
    """
    from weekly_mailer import subscribers as subs

    if not yes:
        click.confirm(f"Delete {email} and all their history?", abort=True)
    with app.db.sessions.begin() as session:
        sub = subs.remove(session, email)
        click.echo(f"Removed {sub.email}.")


@subscribers.command()
@click.argument("email")
@pass_app
def unsubscribe(app: AppContext, email: str) -> None:
    """Unsubscribe an address (kept, so it is never mailed or imported again by accident)."""
    from weekly_mailer import subscribers as subs

    with app.db.sessions.begin() as session:
        sub = subs.get_by_email(session, email)
        if sub is None:
            raise SubscriberError(f"{email.strip()} is not a subscriber")
        changed = subs.unsubscribe(session, sub, source="cli")
        click.echo(
            f"Unsubscribed {sub.email}." if changed else f"{sub.email} was already unsubscribed."
        )


@subscribers.command()
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def erase(app: AppContext, email: str, yes: bool) -> None:
    """Forget an address (a GDPR erasure), keeping the list's books.

    The address, the name and the history are erased everywhere (reports and refusals that
    quoted the address too). What stays: the delivery rows without the address (each issue's
    counts are unchanged), an audit row of when and by whom, and a keyed hash of the address
    (under secret_key), so that a later `import` of it keeps it off the list unless
    --resubscribe is given. The reader can do the same from their page ("Forget me").
    """
    import getpass

    from weekly_mailer.clock import utcnow
    from weekly_mailer.subscribers.forget import erase_address

    if not yes:
        click.confirm(f"Erase {email} and all their history?", abort=True)
    try:
        by = f"operator {getpass.getuser()} (weekly-mailer subscribers erase)"
    except (KeyError, OSError):
        by = "operator (weekly-mailer subscribers erase)"
    with app.db.sessions.begin() as session:
        erase_address(session, email, secret_key=app.settings.secret_key, by=by, now=utcnow())
    click.echo(f"Erased {email.strip()}.")


def register(main: click.Group) -> None:
    main.add_command(subscribers)
