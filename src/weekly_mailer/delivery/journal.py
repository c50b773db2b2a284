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

The file is locked (``flock``) while its worker lives. Any worker that starts, and every
claim after, folds the journals nobody holds (their processes died): each line becomes a
``sent`` row where the row is still ``sending`` under that claim (``outbox.mark_accepted``;
a row recorded already, or claimed again since, is left alone), the other rows its dead owner
(named on the file's first line) still held are handed back at once instead of when their
leases end; then the file goes. After a
database outage a worker folds its own journal the same way. A clean end removes it.

A claim that takes over rows whose lease ran out while their worker lived (it was paused, its
renewals were late) reads the other journals first (``accepted_elsewhere``): a row found there
under the old claim's token was accepted already and is recorded ``sent``, not sent again.

What is not covered: a power loss or a kernel crash (no ``fsync``: the page cache goes with
the machine), so after one the next run resends what the ledger had not recorded, at most
``pipeline.unrecorded_bound`` messages a process, with the same Message-IDs; and a journal on
another host (with PostgreSQL, each host folds its own ``journal_dir``).
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
from collections.abc import Callable, Sequence
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
CLEAR_AT = 256 * 1024  # bytes: an idle worker empties its journal past this size
Entry = tuple[int, str, int, dt.datetime]  # delivery id, lease token, reply code, when
Accept = Callable[[Sequence[Entry]], int]
Release = Callable[[str], int]


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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.lines = 0
        self.failing = False
        self._head()

    def _head(self) -> None:
        """The first line names the lease owner: a fold hands back what a dead owner held."""
        with contextlib.suppress(OSError):  # a full disk: the lines after it still count
            if os.fstat(self._fd).st_size == 0:
                os.write(self._fd, f"# owner {self.owner}\n".encode())

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
        it; returns how many rows became ``sent``."""
        if self._fd < 0:
            return 0
        n = accept(read(self.path))
        self.clear()
        return n

    def clear(self, *, at_least: int = 0) -> None:
        """Empty the journal (every line in it is recorded), when it holds ``at_least`` bytes."""
        if self._fd >= 0 and os.fstat(self._fd).st_size >= at_least:
            os.ftruncate(self._fd, 0)
            self.lines = 0
            self._head()

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


def owner_of(path: Path) -> str | None:
    """The lease owner a journal file names on its first line."""
    try:
        with path.open("rb") as f:
            first = f.readline(400).decode("ascii", errors="replace").split()
    except OSError:
        return None
    return first[2] if len(first) == 3 and first[:2] == ["#", "owner"] else None


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
    how many rows became ``sent``. ``release``: hand back the other rows the dead owner held,
    at once (it is dead: its lock is free), rather than when their leases end. ``skip``: this
    worker's own file."""
    try:
        paths = sorted(directory.glob("*" + SUFFIX))
    except OSError:
        return 0
    total = 0
    for path in paths:
        if skip is not None and path == skip:
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue  # folded by someone else meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its worker lives
            if not path.exists():
                continue  # folded and removed while we waited for the lock
            entries = read(path)
            n = accept(entries) if entries else 0
            total += n
            owner = owner_of(path)
            back = release(owner) if release is not None and owner else 0
            if entries or back:
                log.info("journal %s: %d acceptances, %d now sent, %d rows handed back",
                         path, len(entries), n, back)  # fmt: skip
            path.unlink()
        finally:
            os.close(fd)
    return total
