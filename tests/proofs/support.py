"""What the proof tests share: a local HTTP server whose links work or not, the article folder,
the settings written to a config file for the CLI, delivering what the outbox holds."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import http.server
import threading
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import tomli_w

from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.delivery import resolve_backend
from weekly_mailer.delivery.runner import Runner
from weekly_mailer.store.db import Database

LA = zoneinfo.ZoneInfo("America/Los_Angeles")


def _a_coming_wednesday() -> dt.datetime:
    """18:00 Los Angeles on a Wednesday 3 to 9 days from now: the clock of the jobs is injected,
    but the CLI (a subprocess) and the web app decide with the real time, before which the
    week must still be open (not given up)."""
    start = dt.datetime.now(LA).date() + dt.timedelta(days=3)
    day = start + dt.timedelta(days=(2 - start.weekday()) % 7)
    return dt.datetime.combine(day, dt.time(18), tzinfo=LA)


WED = _a_coming_wednesday()  # the send time
WEEK = WED.date()


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class _Handler(http.server.BaseHTTPRequestHandler):
    """/ok 200 · /gone 404 · /no-head 405 to HEAD, 200 to GET · /moved 301 to /ok."""

    def _answer(self, *, head: bool) -> None:
        path = self.path.split("?")[0]
        if path == "/moved":
            self.send_response(301)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = {"/ok": 200, "/gone": 404}.get(path, 404)
        if path == "/no-head":
            status = 405 if head else 200
        body = b"" if head else b"<p>page</p>"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.seen.append((self.command, path))  # type: ignore[attr-defined]

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(head=False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def link_server() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A local HTTP server for the issue's links: its base URL and the requests it saw."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def write_article(folder: Path, base: str, *, extra: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{WEEK}-hedges.md"
    path.write_text(
        "---\ntitle: Hedges in winter\nauthor: Robin Field\n"
        f"date: {WEEK - dt.timedelta(days=1)}\n---\n"
        "A hedge is a slow city: wrens, dunnocks and a hundred insects share it.\n\n"
        f"See [the survey]({base}/ok), [the old map]({base}/gone), "
        f"[the atlas]({base}/no-head) and [the notes]({base}/moved).\n{extra}"
    )
    return path


def write_config(settings: Settings, path: Path) -> Path:
    keys = ("database_url", "backend_url", "secret_key", "base_url", "from_address",
            "list_name", "list_id", "postal_address", "article_source", "approval",
            "proof_hours", "grace_hours", "preflight")  # fmt: skip
    values: dict[str, object] = {k: getattr(settings, k) for k in keys}
    values["editors"] = list(settings.editors)
    path.write_text(tomli_w.dumps(values))
    return path


def add_readers(database: Database, *emails: str) -> None:
    with database.sessions.begin() as session:
        for address in emails:
            subs.add(session, address, confirmed=True, source="test")


def deliver(database: Database, settings: Settings, clock: Clock) -> None:
    """Deliver what is due in the outbox (proofs and issue copies) until idle."""
    backend = resolve_backend(settings)
    try:
        Runner(settings, database.sessions, backend, clock=clock).run(max_wait=0.5, poll=0.1)
    finally:
        backend.close()


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def summary_of(data: bytes) -> str:
    """The proof's summary: its first text/plain part."""
    message = parsed(data)
    first = next(message.iter_parts())
    assert first.get_content_type() == "text/plain"
    return str(first.get_content()).replace("\r\n", "\n")
