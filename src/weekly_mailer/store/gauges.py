"""The database's gauges for the metrics listener, read at scrape time: outbox depth by kind and
state, the latest issue's list-health rates, and the bounce and complaint reports recorded.

:class:`DatabaseCollector` caches what it read for a few seconds (scrapes from several
Prometheus servers cost one set of queries; :meth:`DatabaseCollector.expire` drops it when a
command's work ends), reads on SQLite without taking the write lock,
and never raises: a database that is down or locked is ``weekly_mailer_database_up 0`` and a
warning in the log, not a failed scrape.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from weekly_mailer.store.bounce_models import BounceEvent, BounceKind
from weekly_mailer.store.db import READ_ONLY
from weekly_mailer.store.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    EventKind,
    Issue,
    SubscriberEvent,
)
from weekly_mailer.store.outbox.rows import OPEN_STATES

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)


class HealthFigures(Protocol):
    """One issue's list health as the guard counts it (``issues.health.IssueHealth``)."""

    @property
    def delivered(self) -> int: ...
    @property
    def bounce_rate(self) -> float: ...
    @property
    def complaint_rate(self) -> float: ...


# The edges pass ``issues.health.issue_health`` (the store cannot import the services), so the
# gauges and the guard that holds a send read the same rates.
HealthFn = Callable[[Session, int], HealthFigures]


@dataclasses.dataclass(frozen=True)
class Reading:
    """What one look at the database found."""

    depth: dict[tuple[str, str], int]  # (kind, state) -> rows, open states only
    issue_id: int | None  # the latest enqueued issue, whose list health this is
    issue_sent: int
    hard_bounces: int  # hard bounce reports since that issue was enqueued
    complaints: int  # complaints since that issue was enqueued
    reports: dict[str, int]  # bounce_event rows by kind, ever
    complaints_ever: int
    guard_rates: tuple[float, float] | None = None  # (hard bounce, complaint), from ``health``

    def rate(self, n: int) -> float:
        return n / self.issue_sent if self.issue_sent else 0.0

    @property
    def hard_bounce_rate(self) -> float:
        return self.rate(self.hard_bounces) if self.guard_rates is None else self.guard_rates[0]

    @property
    def complaint_rate(self) -> float:
        return self.rate(self.complaints) if self.guard_rates is None else self.guard_rates[1]


def read(conn: Connection, *, health: HealthFn | None = None) -> Reading:
    """Every gauge's value, in a few cheap queries (the open states are a small part of the
    outbox, and each count uses an index). With ``health``, the latest issue's rates are the
    ones the list-health guard judges; without it, reports since the issue was enqueued per
    copy sent."""
    depth = {(k.value, s.value): 0 for k in DeliveryKind for s in OPEN_STATES}
    for kind, status, n in conn.execute(
        select(Delivery.kind, Delivery.status, func.count())
        .where(Delivery.status.in_([s.value for s in OPEN_STATES]))
        .group_by(Delivery.kind, Delivery.status)
    ):
        depth[(kind, status)] = int(n)
    latest = conn.execute(
        select(Issue.id, Issue.enqueued_at)
        .where(Issue.enqueued_at.is_not(None))
        .order_by(Issue.enqueued_at.desc(), Issue.id.desc())
        .limit(1)
    ).first()
    sent = hard = complaints = 0
    if latest is not None:
        sent = (
            conn.scalar(
                select(func.count()).where(
                    Delivery.issue_id == latest.id, Delivery.status == DeliveryStatus.SENT.value
                )
            )
            or 0
        )
        hard = (
            conn.scalar(
                select(func.count()).where(
                    BounceEvent.kind == BounceKind.HARD.value, BounceEvent.at >= latest.enqueued_at
                )
            )
            or 0
        )
        complaints = (
            conn.scalar(
                select(func.count()).where(
                    SubscriberEvent.kind == EventKind.COMPLAINED.value,
                    SubscriberEvent.at >= latest.enqueued_at,
                )
            )
            or 0
        )
    reports = {k.value: 0 for k in BounceKind}
    for kind, n in conn.execute(select(BounceEvent.kind, func.count()).group_by(BounceEvent.kind)):
        reports[kind] = int(n)
    ever = (
        conn.scalar(select(func.count()).where(SubscriberEvent.kind == EventKind.COMPLAINED.value))
        or 0
    )
    guard_rates = None
    if health is not None and latest is not None:
        figures = health(Session(bind=conn), int(latest.id))
        guard_rates = (figures.bounce_rate, figures.complaint_rate)
    return Reading(
        guard_rates=guard_rates,
        depth=depth,
        issue_id=None if latest is None else int(latest.id),
        issue_sent=int(sent),
        hard_bounces=int(hard),
        complaints=int(complaints),
        reports=reports,
        complaints_ever=int(ever),
    )


class DatabaseCollector(Collector):
    """The gauges of :func:`read`, for a metrics registry; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        *,
        cache_seconds: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        health: HealthFn | None = None,
    ) -> None:
        self.engine = engine
        self.health = health
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._at = -1e18
        self._reading: Reading | None = None
        self._up = False

    def describe(self) -> Iterable[Metric]:
        return iter(())  # read at scrape time only: registering must not query

    def expire(self) -> None:
        """Forget the cached reading: the next scrape reads the database (the work is over,
        so a scrape after it must see the final state, not one from a few seconds ago)."""
        with self._lock:
            self._at = -1e18

    def _refresh(self) -> None:
        with self._lock:
            if self.monotonic() - self._at < self.cache_seconds:
                return
            self._at = self.monotonic()
            try:
                with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
                    with conn.begin():
                        self._reading = read(conn, health=self.health)
                self._up = True
            except Exception as exc:  # noqa: BLE001 - a scrape must answer, whatever the DB does
                if self._up or self._reading is None:
                    log.warning("metrics: cannot read the database: %s", str(exc).splitlines()[0])
                self._up, self._reading = False, None

    def collect(self) -> Iterable[Metric]:
        self._refresh()
        up = GaugeMetricFamily(
            "weekly_mailer_database_up",
            "1 when the metrics listener could read the database at the last scrape, else 0.",
            value=1 if self._up else 0,
        )
        yield up
        r = self._reading
        if r is None:
            return
        depth = GaugeMetricFamily(
            "weekly_mailer_outbox_depth",
            "Outbox rows not finished yet, by kind and state (queued, sending, deferred).",
            labels=["kind", "state"],
        )
        for (kind, state), n in sorted(r.depth.items()):
            depth.add_metric([kind, state], n)
        yield depth
        health = GaugeMetricFamily(
            "weekly_mailer_list_health_rate",
            "The latest issue's hard-bounce and complaint rates, as the list-health guard counts "
            "them (0 before any copy was sent).",
            labels=["rate"],
        )
        health.add_metric(["hard_bounce"], r.hard_bounce_rate)
        health.add_metric(["complaint"], r.complaint_rate)
        yield health
        yield GaugeMetricFamily(
            "weekly_mailer_list_health_issue_sent",
            "Copies of the latest enqueued issue sent so far (the list-health rates' base).",
            value=r.issue_sent,
        )
        reports = CounterMetricFamily(
            "weekly_mailer_bounce_reports",
            "Bounce and feedback reports recorded (bounce_event rows), by kind.",
            labels=["kind"],
        )
        for kind, n in sorted(r.reports.items()):
            reports.add_metric([kind], n)
        yield reports
        yield CounterMetricFamily(
            "weekly_mailer_complaints",
            "Subscribers marked as complained (feedback reports), ever.",
            value=r.complaints_ever,
        )
