"""`weekly-mailer issues release` as a subprocess: which hold it releases, who is recorded, and
one-line answers for a week that is not held and a date that is not one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from tests.conftest import init_in, run_cli
from weekly_mailer.config import load_settings
from weekly_mailer.store.db import Database
from weekly_mailer.store.hold_models import WeekHold


def holds(workdir: Path) -> list[tuple[dt.date, str, bool]]:
    with Database(load_settings(environ={})) as db, db.sessions.begin() as session:
        rows = session.scalars(select(WeekHold).order_by(WeekHold.id))
        return [(h.send_week, h.released_by, h.released_at is not None) for h in rows]


def test_release_a_held_week(workdir: Path) -> None:
    init_in(workdir)
    with Database(load_settings(environ={})) as db, db.sessions.begin() as session:
        session.add(
            WeekHold(
                send_week=dt.date(2026, 12, 2),
                reason="issue #1 (week of 2026-11-25): complaint rate 5.00% …",
                held_at=dt.datetime(2026, 11, 28, tzinfo=dt.UTC),
            )
        )

    r = run_cli("issues", "release", "2026-01-07", cwd=workdir)
    assert (r.returncode, r.stderr) == (
        1,
        "Error: nothing is held for the week of 2026-01-07 (held: 2026-12-02)\n",
    )
    r = run_cli("issues", "release", "2026-02-30", cwd=workdir)
    assert r.returncode == 2 and "is not a date as YYYY-MM-DD" in r.stderr
    assert "Traceback" not in r.stderr
    assert holds(workdir) == [(dt.date(2026, 12, 2), "", False)]

    r = run_cli("issues", "release", "2026-12-02", "--by", "ann", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(
        "Released the hold from the week of 2026-12-02 (issue #1 (week of 2026-11-25): "
        "complaint rate 5.00% …), by ann at "
    )
    assert holds(workdir) == [(dt.date(2026, 12, 2), "ann", True)]
    r = run_cli("issues", "release", cwd=workdir)
    assert (r.returncode, r.stdout) == (
        0,
        "Nothing is held: the weekly send goes ahead as scheduled.\n",
    )
