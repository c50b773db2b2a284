"""The pre-flight as ``send`` presents it: a relay that refuses us stops before anything is
stored (exit 1); the other findings are printed, and asked about (``preflight = "warn"``) or
returned to hold the week (``"refuse"``)."""

from __future__ import annotations

import click

from weekly_mailer import preflight
from weekly_mailer.config import Settings
from weekly_mailer.errors import SendError

MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def echo_checks(
    checks: list[preflight.Check], *, err: bool = False, quiet_ok: bool = False
) -> None:
    for check in checks:
        if quiet_ok and check.level == "ok":
            continue
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}[check.level]
        click.echo(f"{click.style(MARKS[check.level], fg=colour)}  {check.what}", err=err)


def preflight_send(settings: Settings, *, dry_run: bool, yes: bool) -> list[preflight.Check]:
    """Run the pre-flight for ``send``; the failed checks that hold the week (``refuse``), else
    ``[]``. ``SendError`` (one line, exit 1) when the relay refuses us; ``Abort`` when the
    operator answers no."""
    if dry_run:
        return []
    checks = preflight.before_send(settings)
    fatal = next((c for c in checks if c.fatal), None)
    if fatal is not None:
        raise SendError(f"{fatal.what}; nothing was stored")
    if settings.preflight == "off":
        return []
    failed = preflight.failures(checks)
    if any(c.level != "ok" for c in checks):
        click.echo("Pre-flight (docs/preflight.md):")
        echo_checks(checks, quiet_ok=True)
    if settings.preflight == "refuse":
        return failed
    if failed and not yes:
        click.confirm(
            f"The pre-flight found {len(failed)} problem(s) that may get the issue refused or "
            "sent to spam; send anyway?",
            abort=True,
        )
    return []
