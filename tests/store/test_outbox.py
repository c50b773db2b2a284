"""What the ledger and the subscriber table say after a send: finishing an issue under a
concurrent retry, bounce counts that reset, durable .eml files, leases a rerun waits for."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event, select, update

from tests.support.delivery import SimpleRenderers, add_subscribers, make_issue
from weekly_mailer.cli import main
from weekly_mailer.config import Settings
from weekly_mailer.delivery.backends.base import Envelope, SendResult
from weekly_mailer.delivery.backends.file import FileBackend
from weekly_mailer.delivery.backends.memory import MemoryBackend
from weekly_mailer.delivery.worker import Worker
from weekly_mailer.errors import PermanentFailure
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Delivery, Issue, Subscriber

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def setup_issue(db: Database, n: int) -> tuple[int, list[str]]:
    with db.sessions.begin() as s:
        emails = add_subscribers(s, n)
        issue = make_issue(s)
        outbox.enqueue(s, issue, now=NOW)
        return issue.id, emails


def statuses(db: Database, issue_id: int) -> dict[str, int]:
    with db.sessions.begin() as s:
        return {k: v for k, v in outbox.counts(s, issue_id).items() if v}


def test_a_successful_delivery_resets_the_bounce_count(
    database: Database, settings: Settings
) -> None:
    issue_id, emails = setup_issue(database, 4)
    with database.sessions.begin() as s:
        s.execute(update(Subscriber).values(bounce_count=2))
    bad = emails[3]

    def handler(env: Envelope) -> SendResult | None:
        if env.recipient == bad:
            raise PermanentFailure("550 5.1.1 No such user", code=550)
        return None

    Worker(database.sessions, settings, MemoryBackend(handler), SimpleRenderers()).run()
    with database.sessions.begin() as s:
        counts = {e: n for e, n in s.execute(select(Subscriber.email, Subscriber.bounce_count))}
        status = {e: st for e, st in s.execute(select(Subscriber.email, Subscriber.status))}
    assert counts == {emails[0]: 0, emails[1]: 0, emails[2]: 0, bad: 3}
    assert status[bad] == "bounced"  # bounce_limit 3: two old bounces and this one


def test_issues_retry_leaves_5xx_refusals_alone_unless_asked(
    database: Database,
    settings: Settings,
    runner: CliRunner,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issue_id, emails = setup_issue(database, 3)

    def handler(env: Envelope) -> SendResult | None:
        if env.recipient == emails[0]:
            raise PermanentFailure("554 5.7.1 Refused by policy", code=554)
        raise PermanentFailure("421 4.3.0 later", code=421)  # stands for a row that gave up

    Worker(database.sessions, settings, MemoryBackend(handler), SimpleRenderers()).run()
    with database.sessions.begin() as s:  # the 421 row: failed after giving up, not refused
        s.execute(
            update(Delivery)
            .where(Delivery.last_code == 421)
            .values(last_error="gave up", last_code=451)
        )
    monkeypatch.setenv("WEEKLY_MAILER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("WEEKLY_MAILER_BACKEND_URL", "memory://")
    out = runner.invoke(main, ["issues", "retry", str(issue_id), "--no-send"])
    assert out.exit_code == 0, out.output
    assert "Queued 2 deliveries of issue" in out.output
    assert "1 refused with a 5xx stay failed (--include-bounced" in out.output
    assert statuses(database, issue_id) == {"queued": 2, "failed": 1}
    out = runner.invoke(main, ["issues", "retry", str(issue_id), "--no-send", "--include-bounced"])
    assert out.exit_code == 0, out.output
    assert "Queued 1 deliveries" in out.output
    assert statuses(database, issue_id) == {"queued": 3}


def test_help_describes_every_option(runner: CliRunner) -> None:
    show = runner.invoke(main, ["issues", "show", "--help"])
    assert "Show at most this many failed and deferred rows." in show.output
    demo = runner.invoke(main, ["demo", "--help"])
    assert "How many sample subscribers" in demo.output
    retry = runner.invoke(main, ["issues", "retry", "--help"])
    assert "--include-bounced" in retry.output


def test_file_backend_syncs_the_file_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "out"
    FileBackend(out).send(Envelope("n@example.org", "r@example.org", b"x\r\n", "<m1@test>"))
    kinds = [(k, Path(p).name if k == "replace" else p) for k, p in events]
    assert len(events) == 3
    assert events[0][0] == "fsync" and Path(events[0][1]).name.startswith(".tmp-")
    assert kinds[1] == ("replace", "m1@test.eml")
    assert events[2] == ("fsync", str(out))


def test_leased_rows_tells_how_many_and_until_when(database: Database) -> None:
    issue_id, _ = setup_issue(database, 5)
    with database.sessions.begin() as s:
        assert outbox.leased_rows(s, issue_id, now=NOW) == (0, None)
        rows, _ = outbox.claim(s, owner="dead", now=NOW, lease_seconds=300, limit=3)
        assert len(rows) == 3
    with database.sessions.begin() as s:
        assert outbox.leased_rows(s, issue_id, now=NOW) == (3, NOW + dt.timedelta(seconds=300))
        later = NOW + dt.timedelta(seconds=301)
        assert outbox.leased_rows(s, issue_id, now=later) == (0, None)


@pytest.mark.postgres
def test_finishing_an_issue_never_overwrites_a_concurrent_retry(
    pg_url: str, settings: Settings
) -> None:
    from weekly_mailer.store.db import make_engine, upgrade

    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    settings = settings.replace(database_url=pg_url)
    with Database(settings) as db:
        issue_id, emails = setup_issue(db, 2)

        def handler(env: Envelope) -> SendResult | None:
            if env.recipient == emails[0]:
                raise PermanentFailure("451 gave up", code=451)
            return None

        Worker(db.sessions, settings, MemoryBackend(handler), SimpleRenderers()).run()
        with db.sessions.begin() as s:
            issue = s.get(Issue, issue_id)
            assert issue is not None
            issue.status, issue.finished_at = "sending", None  # as if not finished yet
        # An `issues retry` commits from another connection just before finish_done writes.
        fired: list[str] = []

        def concurrent_retry(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("UPDATE ISSUE") and not fired:
                fired.append(statement)
                with db.sessions.begin() as other:
                    other_issue = other.get(Issue, issue_id)
                    assert other_issue is not None
                    assert outbox.retry(other, other_issue, now=NOW) == 1

        with db.sessions.begin() as s:
            s.execute(select(Issue.id))  # the transaction is open before the retry commits
            event.listen(db.engine, "before_cursor_execute", concurrent_retry)
            try:
                outbox.finish_done(s, now=NOW, issue_ids=[issue_id])
            finally:
                event.remove(db.engine, "before_cursor_execute", concurrent_retry)
        assert fired
        with db.sessions.begin() as s:
            issue = s.get(Issue, issue_id)
            assert issue is not None
            assert (issue.status, issue.finished_at) == ("sending", None)
        assert statuses(db, issue_id) == {"sent": 1, "queued": 1}
