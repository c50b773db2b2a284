"""A desynchronised SMTP server: an unsolicited ``250`` right after its ``354``, then a 554 to
the content. Both engines drop the session: no row is ``sent`` that the server did not store,
and the error names the content after DATA (not the next message's MAIL FROM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from tests.support.send import Workspace
from tests.support.smtpd import Faults
from tests.support.smtpd_pipelining import PipeliningServer, _PipeliningHandler

pytestmark = pytest.mark.slow

READERS = 40


class _EarlySMTP(SMTP):
    """Answers DATA with ``354`` and, unasked, ``250`` in the same write (as a confused proxy
    does: a reply that comes later than the client's next write cannot be told from an answer).
    """

    async def push(self, status: str) -> None:
        if status.startswith("354"):
            status += "\r\n250 2.0.0 OK (nobody asked)"
        await super().push(status)


class _EarlyController(Controller):
    def factory(self) -> SMTP:
        return _EarlySMTP(self.handler, **self.SMTP_kwargs)


class EarlyServer(PipeliningServer):
    def _controller(self) -> Controller:
        return _EarlyController(
            _PipeliningHandler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10,
            **self._kwargs,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("query", "pipelining"),
    [("", True), ("", False), ("?engine=smtplib", False)],
    ids=["pipelined", "pipelined-no-PIPELINING", "smtplib"],
)
def test_an_early_250_after_354_sends_nothing_sent(
    tmp_path: Path, query: str, pipelining: bool
) -> None:
    refuse_content = Faults(custom=lambda rcpt: "554 5.6.0 Content refused")
    with EarlyServer(refuse_content, pipelining=pipelining) as server:
        ws = Workspace(tmp_path, backend_url=server.url + query, concurrency=2, batch_size=20)
        ws.add_subscribers(READERS)
        out = ws.run("send", "--yes", timeout=170)
        stored = server.received()
    ledger = ws.ledger()
    assert stored == []
    assert ledger.get("sent", []) == [], "recorded sent, never stored"
    assert "Traceback" not in out.stderr
    waiting = ledger.get("deferred", []) + ledger.get("queued", [])
    assert len(waiting) == READERS, ledger.keys()  # deferred, nobody lost or failed
    errors = _errors(ws)
    assert errors and all("before the message content after DATA was written" in e for e in errors)
    assert not any("refused the sender" in e for e in errors + [out.stdout + out.stderr])
    print(f"{query or 'pipelined'}: exit {out.returncode}; {len(waiting)} deferred; "
          f"e.g. {errors[0]!r}")  # fmt: skip


def _errors(ws: Workspace) -> list[str]:
    import sqlite3

    con = sqlite3.connect(ws.db_path, timeout=30)
    try:
        rows: list[Any] = con.execute(
            "SELECT last_error FROM delivery WHERE last_error IS NOT NULL"
        ).fetchall()
    finally:
        con.close()
    return [str(r[0]) for r in rows]
