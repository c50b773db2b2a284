"""The ``week_hold`` table: the list-health guard's holds on the weekly send, kept as a ledger.

A row says that the rates of one issue (``issue_id``: its hard-bounce or complaint rate passed
its limit) hold the weekly send from ``send_week`` on, why (``reason``, one line, with the
figures), and, once an operator released it, when and by whom. An unreleased row holds every
new issue; an issue holds the send at most once (``issue_id`` is unique), so a released hold
stays released. See :mod:`weekly_mailer.issues.health`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from weekly_mailer.clock import utcnow
from weekly_mailer.store.models import Base, UTCDateTime


class WeekHold(Base):
    __tablename__ = "week_hold"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The first send week held: the week after the issue's that had not been sent yet.
    send_week: Mapped[dt.date] = mapped_column(index=True)
    issue_id: Mapped[int | None] = mapped_column(
        ForeignKey("issue.id", ondelete="SET NULL"), unique=True
    )
    reason: Mapped[str] = mapped_column(Text, default="")
    # The figures the decision was made on.
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    hard_bounces: Mapped[int] = mapped_column(Integer, default=0)
    complaints: Mapped[int] = mapped_column(Integer, default=0)
    held_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    released_by: Mapped[str] = mapped_column(String(200), default="")

    def __repr__(self) -> str:
        state = "released" if self.released_at else "held"
        return f"<WeekHold {self.id} {self.send_week} {state}>"
