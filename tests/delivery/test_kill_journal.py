"""The acceptance journal under the races a SIGKILL test meets: a journal being made while
another delivery process folds (before its lock, and at the very moment of its lock), and a
fold beside a live worker of the same owner name. On a real SQLite file and the real
PostgreSQL server; the file locks are the kernel's.

The end-to-end figure (20 kills, at most one duplicate per connection) is
test_faults_e2e.py's; these pin down the three causes it had: one doubled 50 to 98 readers in
one kill of 20, another (a sibling's fold holding the lock of the journal being made, so that
its worker sent without one) a whole claim of 80, at two kills of 20 under load."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
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


class FoldDuring:
    """``fcntl`` for the journal module, where the first ``flock`` (the maker's) happens while
    another process's fold of the folder runs and holds every lock it takes: the fold is let go
    only once the maker's ``flock`` has returned or failed. (A thread of this process stands
    for the other process: ``flock`` locks of two opens of a file exclude each other.)"""

    LOCK_EX, LOCK_NB, LOCK_UN = fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN
    WAIT = 2.0  # seconds, at most, for either side

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.maker: int | None = None
        self.fold_locked: list[int] = []  # the fds the fold locked while the maker locked
        self._held = threading.Event()
        self._go = threading.Event()

    def flock(self, fd: int, operation: int) -> None:
        if self.maker is None:
            self.maker = fd
            folding = threading.Thread(target=fold, args=(self.directory, nothing))
            folding.start()
            # The fold has locked what it locks (or ended without locking anything).
            deadline = time.monotonic() + self.WAIT
            while not self._held.is_set() and folding.is_alive():
                if time.monotonic() > deadline:
                    break
                self._held.wait(0.005)
            try:
                fcntl.flock(fd, operation)
            finally:
                self._go.set()
                folding.join(self.WAIT)
            return
        if fd == self.maker:  # a retry of the maker's
            fcntl.flock(fd, operation)
            return
        fcntl.flock(fd, operation)  # the fold's
        self.fold_locked.append(fd)
        self._held.set()
        self._go.wait(self.WAIT)


def test_a_journal_locked_while_another_process_folds_is_made_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "journal"
    directory.mkdir()
    race = FoldDuring(directory)
    monkeypatch.setattr(journal_module, "fcntl", race)
    journal = Journal(directory, OWNER)  # raised BlockingIOError: the worker went without
    monkeypatch.undo()
    assert race.maker is not None
    assert race.fold_locked == []  # the fold never took the lock of the journal being made
    assert journal.path.exists()
    assert fold(directory, nothing) == 0  # locked: its worker lives
    journal.close(remove=False)
    assert [p.name for p in directory.iterdir()] == [journal.path.name]


def test_a_journal_waits_out_an_instant_lock_on_its_part_file(tmp_path: Path) -> None:
    """A fold of an older version locked young part files for an instant (to read their age):
    the worker making the journal waits that instant out instead of going without one."""
    directory = tmp_path / "journal"
    directory.mkdir()
    real_open = os.open
    held: list[threading.Thread] = []

    def open_and_hold(path: Any, flags: int, mode: int = 0o777) -> int:
        fd = real_open(path, flags, mode)
        if Path(path).name.startswith(PART) and not held:
            other = real_open(path, os.O_RDWR)  # another process's open of the same file
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)

            def release() -> None:
                time.sleep(0.05)
                os.close(other)

            held.append(threading.Thread(target=release))
            held[0].start()
        return fd

    with pytest.MonkeyPatch.context() as m:
        m.setattr(journal_module.os, "open", open_and_hold)
        journal = Journal(directory, OWNER)
    held[0].join()
    assert journal.path.exists()
    assert fold(directory, nothing) == 0
    journal.close()


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


def test_a_worker_whose_journal_was_made_during_a_fold_loses_nothing_to_a_kill(
    db: Database, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two delivery processes start together: one makes its journal while the other folds.
    Killed after two acceptances, its journal is folded: those two are sent, the rest of its
    claim is handed back at once, nothing waits for a lease and nothing goes out twice."""
    with db.sessions.begin() as s:
        add_subscribers(s, 5)
        outbox.enqueue(s, make_issue(s), now=utc() - dt.timedelta(seconds=1))
    port = SqlOutbox(db.sessions, owner=OWNER, lease_seconds=300,
                     effects=ResultEffects(settings))  # fmt: skip
    directory = tmp_path / "journal"
    directory.mkdir()
    monkeypatch.setattr(journal_module, "fcntl", FoldDuring(directory))
    journal = Journal(directory, OWNER)
    monkeypatch.undo()
    rows = port.claim(5, now=utc()).rows
    journal.claimed(r.lease_token for r in rows)
    accepted(journal, rows[0])
    accepted(journal, rows[1])
    journal.close(remove=False)  # SIGKILL
    assert fold(directory, port.accept, release=port.hand_back) == 2
    found = statuses(db)
    assert [found[str(r.delivery_id)][0] for r in rows] == ["sent", "sent"] + ["queued"] * 3
    with db.sessions.begin() as s:
        assert outbox.leased_rows(s, rows[0].issue_id, now=utc())[0] == 0


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
