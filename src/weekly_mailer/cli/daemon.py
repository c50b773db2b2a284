"""``schedule`` and ``run``: the weekly send times, and the daemon that keeps them."""

from __future__ import annotations

import datetime as dt

import click

from ._common import AppContext, pass_app


@click.command()
@click.option("--count", "-n", type=click.IntRange(min=1, max=1000), default=5, show_default=True)
@pass_app
def schedule(app: AppContext, count: int) -> None:
    """Print the next COUNT send times: local time with its UTC offset, then UTC."""
    from ..scheduler import WeeklySchedule, format_fire_time

    settings = app.settings
    weekly = WeeklySchedule.from_settings(settings)
    now = dt.datetime.now(dt.UTC)
    for fire in weekly.fire_times(now, count):
        click.echo(format_fire_time(fire, settings.zone))


def register(main: click.Group) -> None:
    main.add_command(schedule)
