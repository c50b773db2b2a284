"""Helpers of the fault tests: a `send` subprocess whose output goes to files, its process tree
and connections read from /proc, and the ledger read on SQLite or PostgreSQL alike."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from tests.support.send import Workspace
from weekly_mailer.store.db import make_engine
from weekly_mailer.store.models import Delivery, Subscriber


@dataclass
class Run:
    """A `weekly-mailer ARGS` subprocess writing its stdout and stderr to files (a pipe nobody
    reads would fill during a long send and stop it)."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def end(self) -> None:
        """Kill it if it still runs (a test's ``finally``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)


def start(ws: Workspace, *args: str, name: str = "send") -> Run:
    out, err = ws.root / f"{name}.out", ws.root / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "weekly_mailer", *args],
            cwd=ws.root,
            env=ws.env(),
            stdout=o,
            stderr=e,
        )
    return Run(proc, out, err)


# -- processes, from /proc ------------------------------------------------------------------


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...)."""
    found, todo = [], children(pid)
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children(p))
    return found


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a reused pid apart), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid: int, started: int | None) -> bool:
    """Whether the process that started at ``started`` still runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] != "Z" and int(fields[19]) == started


def client_ports(pid: int, server_port: int) -> set[int]:
    """The local ports of ``pid``'s TCP connections to 127.0.0.1:``server_port``."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = str(fd.readlink())
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports: set[int] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            cols = line.split()
            local, remote, inode = cols[1], cols[2], cols[9]
            if inode in inodes and int(remote.split(":")[1], 16) == server_port:
                ports.add(int(local.split(":")[1], 16))
    return ports


# -- the ledger ------------------------------------------------------------------------------


class Ledger:
    """The delivery rows of a database (SQLite or PostgreSQL), read through SQLAlchemy."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    def statuses(self) -> Counter[str]:
        with self.engine.connect() as conn:
            return Counter(
                {s: n for s, n in conn.execute(
                    select(Delivery.status, func.count()).group_by(Delivery.status))}
            )  # fmt: skip

    def with_status(self, status: str) -> set[str]:
        with self.engine.connect() as conn:
            return set(
                conn.scalars(
                    select(Subscriber.email)
                    .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                    .where(Delivery.status == status)
                )
            )

    def held_by(self, pid: int) -> set[str]:
        """The readers whose rows process ``pid`` holds (``sending`` under its lease owner,
        ``HOST:PID:…``)."""
        with self.engine.connect() as conn:
            return set(
                conn.scalars(
                    select(Subscriber.email)
                    .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                    .where(Delivery.status == "sending", Delivery.lease_owner.like(f"%:{pid}:%"))
                )
            )
