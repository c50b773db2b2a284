"""The ``pacing_day`` table: the sending days of a warm-up (``warmup_start``, ``warmup_factor``).

A row opens a sending day: the 24 hours from ``started_at``, during which at most ``allowance``
issue copies go out. The first row is day 0 of the warm-up; a new day opens at the first claim
of an issue copy after the last day's 24 hours are over, so days without a send do not count.
``covers``: that day's allowance covered every active reader when it opened: the warm-up is
over and no day opens after it. See :mod:`weekly_mailer.store.outbox.pacing`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Integer
from sqlalchemy.orm import Mapped, mapped_column

from weekly_mailer.store.models import Base, UTCDateTime


class PacingDay(Base):
    __tablename__ = "pacing_day"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    allowance: Mapped[int] = mapped_column(Integer)
    covers: Mapped[bool] = mapped_column(Boolean, default=False)

    def __repr__(self) -> str:
        return f"<PacingDay {self.id} {self.started_at:%Y-%m-%d %H:%M} {self.allowance}>"
