"""The acceptance journal under the races a SIGKILL test meets: a journal being made while
another delivery process folds, and a fold beside a live worker of the same owner name. On a
real SQLite file and the real PostgreSQL server; the file locks are the kernel's.

The end-to-end figure (20 kills, at most one duplicate per connection) is
test_faults_e2e.py's; these pin down the two causes it had, one of which doubled 50 to 98
readers in one kill of 20."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.delivery import add_subscribers, make_issue
from weekly_mailer.config import Settings
from weekly_mailer.delivery import journal as journal_module
from weekly_mailer.delivery.backends.base import Envelope, SendResult
from weekly_mailer.delivery.journal import PART, SUFFIX, Journal, fold, read
from weekly_mailer.delivery.results import ResultEffects
from weekly_mailer.store import outbox
from weekly_mailer.store.db import Database, make_engine, upgrade
from weekly_mailer.store.models import Delivery
from weekly_mailer.store.outbox import ClaimedRow
from weekly_mailer.store.outbox.port import SqlOutbox

OWNER = "host:4242:0badcafe"


def utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def nothing(entries: Sequence[Any]) -> int:
    return 0


def accepted(journal: Journal, row: ClaimedRow) -> None:
    envelope = Envelope("news@example.org", row.email, b"x\r\n", ref=row)
    journal.accepted(envelope, SendResult(250, "2.0.0 queued"))


class FoldFirst:
    """``fcntl`` for the journal module, where the first ``flock`` lets another process's
    fold of the folder run first: the moment between a journal's creation and its lock."""

    LOCK_EX, LOCK_NB = fcntl.LOCK_EX, fcntl.LOCK_NB

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.folded_before_lock = False

    def flock(self, fd: int, operation: int) -> None:
        if not self.folded_before_lock:
            self.folded_before_lock = True
            fold(self.directory, nothing)
        fcntl.flock(fd, operation)


def test_a_journal_being_made_is_not_folded_away_by_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "journal"
    directory.mkdir()
    race = FoldFirst(directory)
    monkeypatch.setattr(journal_module, "fcntl", race)
    journal = Journal(directory, OWNER)
    monkeypatch.undo()
    assert race.folded_before_lock
    # It is in the folder under its own name, and locked: a fold now leaves it alone.
    assert journal.path.exists(), "another process's fold removed the journal being made"
    assert fold(directory, nothing) == 0
    assert journal.path.exists()
    journal.close(remove=False)  # its worker dies: the next fold finds what it wrote
    assert [p.name for p in directory.iterdir()] == [journal.path.name]


def test_a_part_file_is_removed_only_once_its_maker_is_long_gone(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    directory.mkdir()
    fresh, old = directory / f"{PART}a-1{SUFFIX}", directory / f"{PART}b-2{SUFFIX}"
    fresh.write_text(f"# owner {OWNER}\n")
    old.write_text(f"# owner {OWNER}\n")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    fold(directory, nothing)
    assert fresh.exists()  # its worker may be about to lock it and rename it
    assert not old.exists()


# -- the fold, on the database ------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Database]:
    if request.param == "postgres":
        settings = settings.replace(database_url=request.getfixturevalue("pg_url"))
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    with Database(settings) as database:
        yield database


def statuses(db: Database) -> dict[str, tuple[str, str | None]]:
    with db.sessions.begin() as s:
        found = s.execute(select(Delivery.id, Delivery.status, Delivery.lease_token))
        return {str(i): (st, tok) for i, st, tok in found}


def test_a_fold_records_the_acceptances_then_hands_back_only_the_dead_journals_claims(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        add_subscribers(s, 6)
        outbox.enqueue(s, make_issue(s), now=utc() - dt.timedelta(seconds=1))
    port = SqlOutbox(db.sessions, owner=OWNER, lease_seconds=300,
                     effects=ResultEffects(settings))  # fmt: skip
    directory = tmp_path / "journal"
    # A worker claims 3 rows, journals the claim and one acceptance, then dies.
    dead = port.claim(3, now=utc()).rows
    journal = Journal(directory, OWNER)
    journal.claimed(r.lease_token for r in dead)
    accepted(journal, dead[0])
    journal.close(remove=False)
    # The next run of the same owner name (the same Worker after an outage) claims 3 more.
    live = port.claim(3, now=utc()).rows
    assert {r.lease_token for r in live}.isdisjoint({r.lease_token for r in dead})
    calls: list[str] = []

    def accept(entries: Sequence[tuple[int, str, int, dt.datetime]]) -> int:
        calls.append("accept")
        return port.accept(entries)

    def hand_back(owner: str, tokens: Sequence[str]) -> int:
        calls.append("hand back")
        assert statuses(db)[str(dead[0].delivery_id)][0] == "sent"  # committed before
        return port.hand_back(owner, tokens)

    assert fold(directory, accept, release=hand_back) == 1
    assert calls == ["accept", "hand back"]
    rows = statuses(db)
    assert rows[str(dead[0].delivery_id)] == ("sent", None)
    assert [rows[str(r.delivery_id)][0] for r in dead[1:]] == ["queued", "queued"]
    # The live claim of the same owner name is untouched: its worker still sends those.
    assert [rows[str(r.delivery_id)] for r in live] == [("sending", r.lease_token) for r in live]
    assert list(directory.glob("*" + SUFFIX)) == []


def test_a_fold_that_cannot_record_hands_nothing_back_and_keeps_the_journal(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        add_subscribers(s, 2)
        outbox.enqueue(s, make_issue(s), now=utc() - dt.timedelta(seconds=1))
    port = SqlOutbox(db.sessions, owner=OWNER, lease_seconds=300,
                     effects=ResultEffects(settings))  # fmt: skip
    rows = port.claim(2, now=utc()).rows
    directory = tmp_path / "journal"
    journal = Journal(directory, OWNER)
    journal.claimed(r.lease_token for r in rows)
    accepted(journal, rows[0])
    journal.close(remove=False)
    handed: list[str] = []

    def failing(entries: Sequence[tuple[int, str, int, dt.datetime]]) -> int:
        raise OSError("the database went away")

    with pytest.raises(OSError):
        fold(directory, failing, release=lambda o, t: handed.append(o) or 0)
    assert handed == []
    assert [r[0] for r in statuses(db).values()] == ["sending", "sending"]
    (path,) = directory.glob("*" + SUFFIX)
    assert [e[0] for e in read(path)] == [rows[0].delivery_id]
    # The next fold, with the database back, records it and hands the other back.
    assert fold(directory, port.accept, release=port.hand_back) == 1
    assert sorted(r[0] for r in statuses(db).values()) == ["queued", "sent"]


def test_clearing_a_journal_keeps_the_claims_still_held(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    journal = Journal(directory, OWNER)
    journal.claimed(["aaaa", "bbbb"])
    journal.clear(held={"bbbb"})
    text = journal.path.read_text()
    journal.close()
    assert text == f"# owner {OWNER}\n# claim bbbb\n"
