"""The weekly job: prepare the week's issue through the issue service, or record why not.

One entry point, :meth:`WeeklyJob.reconcile`, runs at the scheduled time (cron trigger), on
start-up and every minute after: it looks at the most recent scheduled send time and

- does nothing when its week already has an issue row (sent, sending, skipped or missed);
- sends it when it is within ``grace_hours`` (at the send time itself, that is "now");
- records the week as ``missed`` (a WARNING) when it is older, and never sends it late;
- on a fresh database (no issue yet), leaves a send time that passed before this daemon started
  alone (INFO): the first issue goes out at the next send time.

Weeks between the last recorded one and the most recent (several weeks of downtime) are each
recorded as ``missed`` with a WARNING (at most :data:`~.catchup.MAX_GAP_WEEKS` back).

Each run also lets the list-health guard look at the issues that finished lately
(:func:`weekly_mailer.issues.guard`; a new hold is a WARNING). A week to send while a hold is
unreleased is not sent and not recorded (a WARNING, once, naming the issue, the rate and the
figures): after ``weekly-mailer issues release`` the next run sends it, within the grace window.

Before the send the pre-flight runs (``preflight``, :mod:`weekly_mailer.preflight`): ``warn``
logs each problem and sends; ``refuse`` holds the week on a failure as the guard does (released
by ``issues release``; a released pre-flight hold of the week lets it go as it is); ``off``.

The week is prepared by :func:`weekly_mailer.issues.prepare_week` (with ``look_at_week`` and
``plan_week``), the same path as ``send`` and ``demo``, for the send week of the fire time (the
one week rule, :func:`weekly_mailer.issues.send_week_for`). The database decides who sends:
the issue row is inserted in the same transaction that enqueues its deliveries, and
``Issue.send_week`` is unique, so a second daemon's insert loses and it stands down. On
PostgreSQL only the advisory-lock leader even tries. Time comes from the injected ``clock``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from weekly_mailer import issues, preflight, proofs
from weekly_mailer.config_checks import POSTAL_ADDRESS_MISSING
from weekly_mailer.errors import (
    ArticleError,
    ComposeError,
    NoArticleError,
    SendError,
    WeekHeldError,
)
from weekly_mailer.scheduler.catchup import StartAction, decide_on_start, gap_weeks
from weekly_mailer.scheduler.leader import AlwaysLeader, Leadership
from weekly_mailer.scheduler.timing import WeeklySchedule
from weekly_mailer.store.models import IssueStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings

log = logging.getLogger("weekly_mailer.scheduler")

Clock = Callable[[], dt.datetime]


class WeeklyJob:
    """Decides about the most recent send time and acts on it (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        clock: Clock,
        leadership: Leadership | None = None,
        on_enqueued: Callable[[], None] | None = None,
        started_at: dt.datetime | None = None,
    ) -> None:
        self.settings = settings
        # A send time before this moment is not caught up on a fresh database (see catchup).
        self.started_at = started_at or clock()
        self.sessions = sessions
        self.clock = clock
        self.leadership = leadership or AlwaysLeader()
        self.on_enqueued = on_enqueued
        self.schedule = WeeklySchedule.from_settings(settings)
        self.grace = dt.timedelta(hours=settings.grace_hours)
        self._lock = threading.Lock()  # one run at a time in this process
        self._was_leader: bool | None = None
        self._said: set[tuple[dt.date, str]] = set()  # messages already logged loudly
        self._preflighted: set[dt.date] = set()  # weeks whose pre-flight ran

    def reconcile(self) -> StartAction | None:
        """Act on the most recent send time; ``None`` when another daemon leads."""
        if not self._lead():
            return None
        with self._lock:
            return self._reconcile()

    def _lead(self) -> bool:
        leader = self.leadership.acquire()
        if leader != self._was_leader and not isinstance(self.leadership, AlwaysLeader):
            if leader:
                log.info("this daemon leads: it runs the weekly send")
            else:
                log.info("another daemon leads; standing by")
            self._was_leader = leader
        return leader

    def _reconcile(self) -> StartAction:
        now = self.clock().astimezone(dt.UTC)
        with self.sessions.begin() as session:
            fire = self.schedule.previous(now)
            week = self.schedule.send_week(fire)  # issues.send_week_for: the one week rule
            recorded = issues.issue_for_week(session, week) is not None
            last = issues.last_recorded_week(session)
            for hold in issues.guard(session, self.settings, now=now):
                log.warning(
                    "list health: %s; the weekly send is held from the week of %s on "
                    "(`weekly-mailer issues release` lets it go)",
                    hold.reason,
                    hold.send_week,
                )
        gaps = gap_weeks(
            self.schedule, fire_time=fire, last_recorded=last, now=now, grace=self.grace
        )
        for gap_fire, gap_week in gaps:
            reason = (
                f"no issue: the daemon was not running (or could not send) at the send time, "
                f"{gap_fire:%Y-%m-%d %H:%M} UTC, or within the grace window of "
                f"{self.settings.grace_hours:g}h after it"
            )
            self._record(gap_week, IssueStatus.MISSED, reason, now=now)
        decision = decide_on_start(
            self.schedule,
            now=now,
            grace=self.grace,
            week_recorded=recorded,
            fresh_database=last is None,
            running_since=self.started_at,
        )
        if decision.action is StartAction.NOTHING:
            if not recorded:
                self._once(week, logging.INFO, f"week of {week}: nothing to do ({decision.reason})")
            return decision.action
        if decision.action is StartAction.MISSED:
            with self.sessions.begin() as session:
                holds = issues.active_holds(session)
                note = f"; held by the list-health guard: {holds[0].reason}" if holds else ""
                waited = self._approval_missed(session, week)
            self._record(week, IssueStatus.MISSED, waited or decision.reason + note, now=now)
            return decision.action
        catching_up = decision.reason if decision.late_by > dt.timedelta(minutes=1) else ""
        if not self._send_week(fire, now=now, catching_up=catching_up):
            return StartAction.NOTHING  # held by the list-health guard
        return decision.action

    def _approval_missed(self, session: Session, week: dt.date) -> str:
        """The reason a week that waited for its editors is missed (``""``: it did not wait)."""
        if self.settings.approval == "none" or proofs.latest_proof(session, week) is None:
            return ""
        state = proofs.week_approval(session, week)
        if state.state == "approved":
            return ""
        return (
            f"not sent: {state.line()} (approval = {self.settings.approval}) by the end of the "
            f"grace window, {self.settings.grace_hours:g}h after the send time"
        )

    def _waits_for_editors(self, week: dt.date, plan: issues.WeekPlan, fire: dt.datetime) -> bool:
        """Whether the editors hold the send of this content (``approval``; said once)."""
        if plan.composed is None or self.settings.approval == "none":
            return False
        digest = proofs.content_hash(plan.composed)
        with self.sessions.begin() as session:
            blocked = proofs.gate(session, self.settings, week=week, content_hash=digest)
        if blocked is None:
            return False
        self._once(
            week,
            logging.WARNING,
            f"week of {week} not sent yet: {blocked}; waiting until "
            f"{fire + self.grace:%Y-%m-%d %H:%M} UTC",
        )
        return True

    def _preflight(self, week: dt.date) -> list[preflight.Check]:
        """The pre-flight before the week's send, once per week in this process (``[]`` after,
        and with ``preflight = "off"``): each problem logged, a WARNING. With ``refuse`` a
        failure holds the week (``preflight.held_look``: ``issues list`` shows the hold,
        ``issues release`` lets it go)."""
        if self.settings.preflight == "off" or week in self._preflighted:
            return []
        self._preflighted.add(week)
        checks = preflight.before_send(self.settings)
        for check in checks:
            if check.level != "ok":
                log.warning("week of %s: pre-flight %s: %s", week, check.level, check.what)
        return checks if self.settings.preflight == "refuse" else []

    def _send_week(self, fire: dt.datetime, *, now: dt.datetime, catching_up: str = "") -> bool:
        """Prepare the week of ``fire`` through the issue service (as ``send`` and ``demo`` do).
        ``False`` when the list-health guard holds it (said loudly once, then quietly)."""
        week = self.schedule.send_week(fire)
        retrying = f"retrying until {fire + self.grace:%Y-%m-%d %H:%M} UTC"
        try:
            checks = self._preflight(week)  # before the transaction: it asks DNS and the relay
            with self.sessions.begin() as session:
                look = issues.look_at_week(session, self.settings, now=now, at=fire)
                look = preflight.held_look(session, look, checks, now=now)
            plan = issues.plan_week(look, self.settings, scheduled=True)  # obeys the guard
            if self._waits_for_editors(week, plan, fire):
                return False
            if catching_up:
                self._once(week, logging.WARNING, f"week of {week}: catching up, {catching_up}")
            with self.sessions.begin() as session:
                prepared = issues.prepare_week(session, plan, now=now, allow_empty=True)
                issue_id, title, source = (
                    prepared.issue.id,
                    prepared.issue.title,
                    prepared.issue.source,
                )
        except WeekHeldError as exc:
            self._once(week, logging.WARNING, f"week of {week} HELD, not sent: {exc}")
            return False
        except NoArticleError as exc:
            self._record(week, IssueStatus.SKIPPED, str(exc), now=now)
            return True
        except ArticleError as exc:
            self._once(
                week, logging.ERROR, f"week of {week}: cannot read the article ({exc}); {retrying}"
            )
            return True
        except ComposeError as exc:
            self._once(
                week,
                logging.ERROR,
                f"week of {week}: cannot compose {self.settings.article_source} ({exc}); "
                + retrying,
            )
            return True
        except (SendError, IntegrityError):
            log.info("week of %s: another daemon claimed it first; nothing to do", week)
            return True
        if plan.existing is not None or prepared.raced:
            log.info("week of %s: another daemon claimed it first; nothing to do", week)
            return True
        log.info(
            "week of %s: issue #%d %r from %s enqueued for %d subscribers at %s",
            week,
            issue_id,
            title,
            source,
            prepared.queued or 0,
            f"{now:%Y-%m-%d %H:%M:%S} UTC",
        )
        if not self.settings.postal_address:
            log.warning("week of %s: %s", week, POSTAL_ADDRESS_MISSING)
        if self.on_enqueued is not None:
            self.on_enqueued()
        return True

    def _record(self, week: dt.date, status: IssueStatus, reason: str, *, now: dt.datetime) -> None:
        try:
            with self.sessions.begin() as session:
                issues.record_week(session, week, status=status, reason=reason, now=now)
        except IntegrityError:
            log.info("week of %s: another daemon recorded it first", week)
            return
        level = logging.WARNING
        if status is IssueStatus.MISSED:
            log.log(level, "week of %s MISSED, nothing sent: %s", week, reason)
        else:
            log.log(level, "week of %s skipped, nothing sent: %s", week, reason)

    def _once(self, week: dt.date, level: int, message: str) -> None:
        """Log loudly once per week and message, quietly after (this runs every minute)."""
        key = (week, message)
        log.log(level if key not in self._said else logging.DEBUG, message)
        self._said.add(key)
