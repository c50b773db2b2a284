"""The acceptance journal: what the server accepted, written the moment it said so.

Results reach the outbox in batches (``pipeline.py``'s recording thread): between the server's
``250`` to a final dot and the commit that records it there are a few chunks' worth of
messages, and a SIGKILL in that window used to make the next run send all of them again. So
each worker also appends one line per acceptance to a file of its own, from the thread that
read the reply, before anything else happens (``Journal.accepted``, the backends' ``Receipts``):
``<delivery id> <lease token> <code> <unix time>``. One ``write(2)`` with ``O_APPEND``: once it
returns the line is the kernel's, and a SIGKILL of the process does not lose it. What a kill can
still resend is only what was accepted and not yet written here: at most the one message per
connection whose reply was being read.

The file is locked (``flock``) while its worker lives; it is made under another name, locked,
then renamed, so no fold ever meets it unlocked, and no fold locks it while it is being made
(that made its worker's lock fail, and the worker sent without a journal). Each claim notes
its lease token in it (``# claim <token>``) before any of its rows goes on the wire. Any
worker that starts, and every claim after, folds the journals nobody holds (their processes
died), one at a time under their lock: first each acceptance becomes a ``sent`` row where the
row is still ``sending`` under that claim (``outbox.accept``; a row recorded already, or
claimed again since, is left alone), committed; only then are the rows still ``sending`` under
the claims it noted handed back (``outbox.hand_back``), at once instead of when their leases
end: never a row of another claim, even one of a worker of the same owner name that lives on;
then the file goes. A fault on the way leaves the file for the next fold. After a database
outage a worker folds its own journal the same way. A clean end removes it.

A claim that takes over rows whose lease ran out while their worker lived (it was paused, its
renewals were late) reads the other journals first (``accepted_elsewhere``): a row found there
under the old claim's token was accepted already and is recorded ``sent``, not sent again.

What is not covered: a power loss or a kernel crash (no ``fsync``: the page cache goes with
the machine), so after one the next run resends what the ledger had not recorded, at most
``pipeline.unrecorded_bound`` messages a process, with the same Message-IDs; a journal on
another host (with PostgreSQL, each host folds its own ``journal_dir``); and a worker that
could not make its journal (a full disk: it warns and sends without one), whose kill resends
what it had not recorded once its leases end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from weekly_mailer.store.models import DeliveryStatus
from weekly_mailer.store.outbox import ClaimedRow, Outcome

if TYPE_CHECKING:
    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Envelope, SendResult

log = logging.getLogger(__name__)

__all__ = ["Entry", "Journal", "accepted_elsewhere", "fold", "journal_dir"]

SUFFIX = ".journal"
PART = ".new-"  # a journal being made: locked, then renamed to its own name
PART_LEFT_AFTER = 60.0  # seconds: a part file this old was left by a worker that died making it
LOCK_NEW_WAIT = 1.0  # seconds a worker waits for the lock of the journal it makes
CLEAR_AT = 256 * 1024  # bytes: an idle worker empties its journal past this size
Entry = tuple[int, str, int, dt.datetime]  # delivery id, lease token, reply code, when
Accept = Callable[[Sequence[Entry]], int]
Release = Callable[[str, Sequence[str]], int]  # owner, claim tokens


def journal_dir(settings: Settings) -> Path:
    """``journal_dir``; by default beside a SQLite database file (``<file>.delivery-journal``),
    else a folder of the database's own under ``$XDG_STATE_HOME/weekly_mailer/journal``
    (``~/.local/state`` when unset)."""
    if settings.journal_dir:
        return Path(settings.journal_dir)
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    path = url.database or ""
    if url.get_backend_name() == "sqlite" and path and path != ":memory:":
        if not path.startswith("file:"):
            return Path(path + ".delivery-journal")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    name = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return Path(state) / "weekly_mailer" / "journal" / name


class Journal:
    """One worker's journal file, locked while it lives. ``accepted`` is its ``Receipts``."""

    def __init__(self, directory: Path, owner: str) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", owner) + "-" + secrets.token_hex(4)
        self.path = directory / (name + SUFFIX)  # a file of its own for each run
        self.owner = owner
        self.lines = 0
        self.failing = False
        self._claims: set[str] = set()
        # Made under a part name, locked, then renamed: a fold never meets it unlocked under
        # its own name. (Created under its own name, another worker's fold could lock it
        # between our open and our flock, find it empty and remove it: we then journaled into
        # a file nobody would ever fold.) A fold does not lock a young part file either: when
        # it did (to read its age), a fold holding that lock at the moment of our flock made
        # the flock fail, and this worker then sent without a journal, so a kill resent every
        # message accepted and not yet recorded (a claim of 80, twice in one 20-kill run).
        part = directory / (PART + name + SUFFIX)
        self._fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            _lock_new(self._fd)
            self._head()
            os.rename(part, self.path)
        except OSError:
            os.close(self._fd)
            self._fd = -1
            with contextlib.suppress(OSError):
                part.unlink()
            raise

    def _head(self, claims: Iterable[str] = ()) -> None:
        """The first line names the lease owner; then the claims still held (``claimed``)."""
        with contextlib.suppress(OSError):  # a full disk: the lines after it still count
            if os.fstat(self._fd).st_size == 0:
                os.write(self._fd, f"# owner {self.owner}\n".encode())
        self._claims.clear()
        self.claimed(claims)

    def claimed(self, tokens: Iterable[str]) -> None:
        """Note the lease tokens of a claim, before any of its rows goes on the wire: a fold
        hands back the rows still ``sending`` under these tokens, and no others (a worker of
        the same owner name that lives on keeps its own)."""
        new = sorted({t for t in tokens if t} - self._claims)
        if not new or self._fd < 0:
            return
        try:
            os.write(self._fd, "".join(f"# claim {t}\n" for t in new).encode())
        except OSError as exc:  # its rows then come back when their leases end
            log.debug("journal %s: cannot note a claim (%s)", self.path, exc)
            return
        self._claims.update(new)

    def accepted(self, envelope: Envelope, result: SendResult) -> None:
        """Append the acceptance of ``envelope`` (its ``ref``: the claimed row)."""
        row = envelope.ref
        if row is None or self._fd < 0:
            return
        line = f"{row.delivery_id} {row.lease_token or '-'} {result.code} {time.time():.3f}\n"
        try:
            os.write(self._fd, line.encode())
        except OSError as exc:  # a full disk: the ledger still records it, a kill may resend it
            if not self.failing:
                log.warning("journal %s: cannot append (%s); going on without it", self.path, exc)
            self.failing = True
            return
        self.failing = False
        self.lines += 1

    def fold_own(self, accept: Accept) -> int:
        """Record what this journal holds (after an outage: nothing is in flight), then empty
        it but for its claims; returns how many rows became ``sent``."""
        if self._fd < 0:
            return 0
        n = accept(read(self.path))
        self.clear(held=set(self._claims))
        return n

    def clear(self, *, at_least: int = 0, held: Iterable[str] = ()) -> None:
        """Empty the journal (every acceptance in it is recorded), when it holds ``at_least``
        bytes; the claims still ``held`` are noted again."""
        if self._fd >= 0 and os.fstat(self._fd).st_size >= at_least:
            os.ftruncate(self._fd, 0)
            self.lines = 0
            self._head(held)

    def close(self, *, remove: bool = True) -> None:
        """Let go of the file; ``remove`` it (every line is recorded) or leave it for a fold."""
        if self._fd < 0:
            return
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = -1


def read(path: Path) -> list[Entry]:
    """The entries of a journal file; a torn or foreign line is skipped."""
    entries: list[Entry] = []
    try:
        text = path.read_bytes().decode("ascii", errors="replace")
    except OSError:
        return entries
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        try:
            at = dt.datetime.fromtimestamp(float(parts[3]), dt.UTC)
            entries.append((int(parts[0]), parts[1], int(parts[2]), at))
        except (ValueError, OverflowError, OSError):
            continue
    return entries


def header(path: Path) -> tuple[str | None, set[str]]:
    """The lease owner a journal file names on its first line, and the claims it noted."""
    owner: str | None = None
    tokens: set[str] = set()
    try:
        text = path.read_bytes().decode("ascii", errors="replace")
    except OSError:
        return owner, tokens
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "#":
            if parts[1] == "owner" and owner is None:
                owner = parts[2]
            elif parts[1] == "claim":
                tokens.add(parts[2])
    return owner, tokens


def accepted_elsewhere(
    directory: Path, rows: list[ClaimedRow], *, skip: Path | None = None
) -> tuple[list[ClaimedRow], list[Outcome]]:
    """Of ``rows`` just claimed, those another journal in ``directory`` (a live worker's too)
    shows accepted under the lease they were taken over from, as ``sent`` outcomes to record;
    and the rest, to send."""
    taken = [r for r in rows if r.taken_from]
    if not taken:
        return rows, []
    found: dict[int, Entry] = {}
    try:
        paths = sorted(directory.glob("*" + SUFFIX))
    except OSError:
        return rows, []
    for path in paths:
        if path != skip:
            for entry in read(path):
                found[entry[0]] = entry
    done: list[Outcome] = []
    for r in taken:
        hit = found.get(r.delivery_id)
        if hit is not None and hit[1] == r.taken_from:
            done.append(Outcome(r, DeliveryStatus.SENT.value, code=hit[2], at=hit[3]))
    ids = {o.row.delivery_id for o in done}
    return [r for r in rows if r.delivery_id not in ids], done


def fold(
    directory: Path, accept: Accept, *, release: Release | None = None, skip: Path | None = None
) -> int:
    """Fold every journal in ``directory`` that no live worker holds (see the module); returns
    how many rows became ``sent``. ``release``: then hand back, at once rather than when their
    leases end, the rows still ``sending`` under the claims the journal noted (its worker is
    dead: its lock is free); only after every acceptance in it is recorded, and never a row
    of another claim. ``skip``: this worker's own file."""
    try:
        paths = sorted(directory.glob("*" + SUFFIX))  # part files too: glob matches dot files
    except OSError:
        return 0
    total = 0
    for path in paths:
        if skip is not None and path == skip:
            continue
        if path.name.startswith(PART):
            _clear_left(path)
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue  # folded by someone else meanwhile, or renamed into place
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its worker lives
            if not _same_file(fd, path):
                continue  # folded and removed (or renamed) while we opened it
            total += _fold_one(path, accept, release)
        finally:
            os.close(fd)
    return total


def _lock_new(fd: int) -> None:
    """Lock a journal being made. No fold locks a part file younger than
    ``PART_LEFT_AFTER``, so the lock is free at once; a process of an older version may still
    hold it for an instant (it locked part files to read their age): wait that out."""
    deadline = time.monotonic() + LOCK_NEW_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.001)


def _clear_left(part: Path) -> None:
    """Remove a part file its worker left when it died making it: one older than
    ``PART_LEFT_AFTER`` and unlocked. A younger one is not even opened: its worker may be
    between creating it and locking it, and a lock taken here at that moment would make its
    worker's fail."""
    try:
        if time.time() - part.stat().st_mtime <= PART_LEFT_AFTER:
            return
        fd = os.open(part, os.O_RDWR)
    except OSError:
        return  # renamed into place, or removed, meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _same_file(fd, part):
            part.unlink()
    except OSError:
        pass  # locked: its worker lives (stopped for a minute while making it)
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        mine, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _fold_one(path: Path, accept: Accept, release: Release | None) -> int:
    """One dead worker's journal (locked by the caller): its acceptances recorded ``sent``
    first (one transaction, committed), then its claims' other rows handed back; then the
    file goes. A fault on the way leaves the file for the next fold (both steps can run
    again: a row recorded already, or handed back already, is left alone)."""
    entries = read(path)
    n = accept(entries) if entries else 0
    owner, tokens = header(path)
    back = release(owner, sorted(tokens)) if release is not None and owner and tokens else 0
    if entries or back:
        log.info("journal %s: %d acceptances, %d now sent, %d rows handed back",
                 path, len(entries), n, back)  # fmt: skip
    path.unlink()
    return n
