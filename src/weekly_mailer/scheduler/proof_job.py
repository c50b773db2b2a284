"""The proof job: ``proof_hours`` before each send, the week's proof to the editors.

It runs beside the weekly job (every minute, and at start), with the same injected clock. The
week it looks at is the next send's, or the most recent send's while that week waits within
``grace_hours`` (for an approval, say) and has no issue row yet. Once ``now`` is at or past
the send time minus ``proof_hours``, it composes the week through ``issues.look_at_week`` and
``plan_week`` (the send's own path) and, when the content differs from the week's latest proof
(or there is none), tries the links, stores the proof and queues a copy for each editor
(:mod:`weekly_mailer.proofs`). After that it composes the week again every
:data:`RECHECK` (not every minute: a feed is fetched each time), so an article edited after its
proof gives a new proof within ten minutes; the weekly job composes at the send time anyway and
compares the content with the approved one. Nothing here enqueues the issue: the weekly job
does, at the send time.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from weekly_mailer import issues, proofs
from weekly_mailer.errors import ArticleError, ComposeError, SendError
from weekly_mailer.scheduler.leader import AlwaysLeader, Leadership
from weekly_mailer.scheduler.timing import WeeklySchedule

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from weekly_mailer.config import Settings
    from weekly_mailer.store.proof_models import Proof

log = logging.getLogger("weekly_mailer.scheduler")

Clock = Callable[[], dt.datetime]
RECHECK = dt.timedelta(minutes=10)  # how often a proofed week's content is composed again


class ProofJob:
    """Mails the week's proof when it is due (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        clock: Clock,
        on_queued: Callable[[], None] | None = None,
        link_timeout: float = 10.0,
        leadership: Leadership | None = None,
    ) -> None:
        self.leadership = leadership or AlwaysLeader()
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.on_queued = on_queued
        self.link_timeout = link_timeout
        self.schedule = WeeklySchedule.from_settings(settings)
        self.lead = dt.timedelta(hours=settings.proof_hours)
        self.grace = dt.timedelta(hours=settings.grace_hours)
        self._said: set[str] = set()
        self._checked: dict[dt.date, dt.datetime] = {}  # the last look at a proofed week

    @property
    def enabled(self) -> bool:
        return bool(self.settings.editors) and self.settings.proof_hours > 0

    def due_fire(self, now: dt.datetime) -> dt.datetime:
        """The send time whose proof is looked at now."""
        previous = self.schedule.previous(now)
        if now - previous <= self.grace:
            with self.sessions.begin() as session:
                week = self.schedule.send_week(previous)
                if issues.issue_for_week(session, week) is None:
                    return previous
        return self.schedule.next_after(now)

    def run(self) -> Proof | None:
        """Mail the proof if one is due and its content is new; returns the stored proof."""
        if not self.enabled or not self.leadership.acquire():
            return None
        now = self.clock().astimezone(dt.UTC)
        fire = self.due_fire(now)
        if now < fire - self.lead:
            return None
        week = self.schedule.send_week(fire)
        last = self._checked.get(week)
        if last is not None and now - last < RECHECK:
            return None
        try:
            with self.sessions.begin() as session:
                look = issues.look_at_week(session, self.settings, now=now, at=fire)
            if look.existing is not None or look.held:
                return None
            plan = issues.plan_week(look, self.settings, scheduled=True)
            with self.sessions.begin() as session:
                proof_plan = proofs.plan_proof(session, plan, fire=fire, own=self.settings.base_url)
            if proof_plan is None:
                self._checked[week] = now
                return None
            proof_plan = proofs.try_links(proof_plan, timeout=self.link_timeout)
            with self.sessions.begin() as session:
                if proofs.plan_proof(session, plan, fire=fire, own=self.settings.base_url) is None:
                    return None  # another daemon mailed this proof meanwhile
                proof = proofs.store_proof(session, self.settings, proof_plan, now=now)
                session.expunge(proof)
            self._checked[week] = now
        except (ArticleError, ComposeError, SendError) as exc:
            self._once(f"week of {week}: no proof yet: {exc}")
            return None
        log.info(
            "week of %s: proof #%d of %r mailed to %d editors (%d broken links)%s",
            week,
            proof.id,
            proof.title,
            len(self.settings.editors),
            len(proof_plan.broken),
            "; it replaces an earlier proof: the content changed" if proof_plan.replaces else "",
        )
        if self.on_queued is not None:
            self.on_queued()
        return proof

    def _once(self, message: str) -> None:
        log.log(logging.WARNING if message not in self._said else logging.DEBUG, message)
        self._said.add(message)
