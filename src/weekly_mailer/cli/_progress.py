"""The live progress bar of ``send``, ``issues retry`` and ``demo`` (rich, imported by the
commands that deliver, not by the others)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

if TYPE_CHECKING:
    from weekly_mailer.delivery.worker import Stats


class _RateEta(ProgressColumn):
    """Messages per second since the start, and the time left at that rate."""

    def render(self, task: Task) -> Text:
        rate = float(task.fields.get("rate", 0.0))
        left = (task.total or 0) - task.completed
        eta = "--:--" if rate <= 0 else time.strftime("%M:%S", time.gmtime(left / rate))
        return Text(f"{rate:6.1f} msg/s  ETA {eta}", style="progress.remaining")


class SendProgress:
    """A live bar: sent, deferred, failed, rate, ETA (quiet when stderr is not a terminal)."""

    def __init__(self, total: int, *, already_done: int = 0) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]Sending"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn(
                "sent [green]{task.fields[sent]}[/] · deferred [yellow]"
                "{task.fields[deferred]}[/] · failed [red]{task.fields[failed]}[/]"
            ),  # fmt: skip
            _RateEta(),
            console=self.console,
            transient=False,
            disable=not self.console.is_terminal,
        )
        self.task = self.progress.add_task(
            "send", total=total, completed=0, sent=0, deferred=0, failed=0, rate=0.0
        )
        self.already_done = already_done

    def update(self, stats: Stats) -> None:
        self.progress.update(
            self.task,
            completed=stats.sent + stats.failed + stats.skipped,
            sent=stats.sent,
            deferred=stats.deferred,
            failed=stats.failed,
            rate=stats.rate(),
        )

    def __enter__(self) -> SendProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
