"""``issues archive``: the delivery rows of old finished issues leave the outbox for a
JSON-lines file, their counts stay on the issue; on SQLite and PostgreSQL, through the CLI."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from tests.conftest import run_cli
from tests.support.delivery import add_subscribers, make_issue
from weekly_mailer.config import load_settings
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery, Issue

NOW = dt.datetime(2026, 11, 25, 16, 0, tzinfo=dt.UTC)


def _prepare(url: str, tmp: Path) -> dict[str, str]:
    env = {"WEEKLY_MAILER_DATABASE_URL": url}
    init = run_cli("init", cwd=tmp, env=env)
    assert init.returncode == 0, init.stderr
    with Database(load_settings(tmp / "weekly_mailer.toml", environ=env)) as db:
        with db.sessions.begin() as s:
            emails = add_subscribers(s, 6)
            for week, status in ((dt.date(2026, 11, 4), "sent"), (dt.date(2026, 11, 11), "sent"),
                                 (dt.date(2026, 11, 18), "sending")):  # fmt: skip
                issue = make_issue(s, week)
                outbox.enqueue(s, issue, now=NOW)
                s.execute(update(Delivery).where(Delivery.issue_id == issue.id)
                          .values(status="sent", sent_at=NOW, last_code=250))  # fmt: skip
                issue.status = status
            first = s.scalars(select(Issue).order_by(Issue.send_week)).first()
            assert first is not None
            s.execute(
                update(Delivery)
                .where(Delivery.issue_id == first.id, Delivery.subscriber_id == 1)
                .values(status="failed", last_code=550, last_error="550 5.1.1 no such user")
            )
    assert emails[0] == "user0000@example.org"
    return env


def _check(url: str, tmp: Path) -> None:
    env = _prepare(url, tmp)
    before = run_cli("issues", "list", cwd=tmp, env=env).stdout
    shown = run_cli("issues", "show", "1", cwd=tmp, env=env).stdout
    assert "│ failed   │    1 │" in shown and "550 5.1.1 no such user" in shown

    dry = run_cli("issues", "archive", "--before", "2026-11-18", "--dry-run", cwd=tmp, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "Would archive 12 rows of 2 issues." in dry.stdout
    no_file = run_cli("issues", "archive", "--before", "2026-11-18", cwd=tmp, env=env)
    assert no_file.returncode == 2 and "give --to FILE.jsonl.gz" in no_file.stderr
    assert "Traceback" not in no_file.stderr

    out = tmp / "old.jsonl.gz"
    done = run_cli(
        "issues", "archive", "--before", "2026-11-18", "--to", str(out), cwd=tmp, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "Issue #1 (week 2026-11-04): archived 6 rows." in done.stdout
    assert "Archived 12 rows of 2 issues to" in done.stdout
    with gzip.open(out, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    failed = [r for r in rows if r["status"] == "failed"]
    assert [(r["email"], r["last_code"], r["issue_id"]) for r in failed] == [
        ("user0000@example.org", 550, 1)
    ]
    with Database(load_settings(tmp / "weekly_mailer.toml", environ=env)) as db:
        with db.sessions.begin() as s:
            grouped = select(Delivery.issue_id, func.count()).group_by(Delivery.issue_id)
            left = {int(i or 0): int(n) for i, n in s.execute(grouped)}
    assert left == {3: 6}  # the sending issue keeps its rows

    # The counts are still shown, from the issue rows now.
    assert run_cli("issues", "list", cwd=tmp, env=env).stdout == before
    show = run_cli("issues", "show", "1", cwd=tmp, env=env).stdout
    assert show == shown.split("Failed and deferred")[0].rstrip(" ")  # the rows' details went

    again = run_cli(
        "issues", "archive", "--before", "2026-11-18", "--to", str(out), cwd=tmp, env=env
    )
    assert again.returncode == 0
    assert "No finished issue before 2026-11-18 has delivery rows left." in again.stdout


def test_archive_on_sqlite(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'a.db'}", tmp_path)


@pytest.mark.postgres
def test_archive_on_postgres(pg_url: str, tmp_path: Path) -> None:
    _check(pg_url, tmp_path)
