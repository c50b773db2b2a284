"""Article sources under adversarial input: one-line errors, a deadline, Markdown left alone."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import init_in, run_cli
from weekly_mailer.articles import feed, load_article
from weekly_mailer.compose import compose_issue
from weekly_mailer.config import Settings
from weekly_mailer.errors import ArticleError

WEEK = dt.date(2026, 11, 18)


def _one_line(result: object) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr + result.stdout  # type: ignore[attr-defined]
    assert len(stderr.strip().splitlines()) == 1, stderr
    return stderr.strip()


def test_an_impossible_front_matter_date_is_one_line(workdir: Path) -> None:
    init_in(workdir)
    (workdir / "bad.md").write_text("---\ntitle: T\ndate: 2026-13-45\n---\nBody.\n")
    result = run_cli("preview", "bad.md", "--text", cwd=workdir)
    assert result.returncode == 1
    assert _one_line(result) == (
        "Error: bad.md: bad front matter: a value that looks like a date is not a real date "
        "(month must be in 1..12)"
    )


class _RawServer:
    """A TCP server on loopback that answers every connection with ``answer(conn)``."""

    def __init__(self, answer: object) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/feed.xml"
        self.answer = answer
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)  # the request
            try:
                self.answer(conn)  # type: ignore[operator]
            except OSError:
                pass  # the client gave up

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def garbage_server() -> Iterator[str]:
    server = _RawServer(lambda conn: conn.sendall(b"HELLO I AM NOT HTTP\r\n\r\n"))
    try:
        yield server.url
    finally:
        server.close()


def test_a_feed_server_answering_a_garbage_status_line_is_one_line(
    workdir: Path, garbage_server: str
) -> None:
    init_in(workdir)
    result = run_cli("preview", garbage_server, "--text", cwd=workdir)
    assert result.returncode == 1
    line = _one_line(result)
    assert line.startswith(f"Error: {garbage_server}: cannot fetch the feed: not an HTTP answer")
    assert "BadStatusLine" in line


def _drip(head: bytes, *, head_too: bool, stop: threading.Event) -> object:
    def answer(conn: socket.socket) -> None:
        if not head_too:
            conn.sendall(head)
        for byte in (head if head_too else b"") + b"x" * 200:
            if stop.is_set():
                return
            conn.sendall(bytes([byte]))
            time.sleep(0.25)  # under the per-read timeout: only a total deadline stops it

    return answer


@pytest.mark.parametrize("head_too", [False, True], ids=["body", "status-and-headers"])
def test_a_server_that_drips_meets_the_total_deadline(
    monkeypatch: pytest.MonkeyPatch, head_too: bool
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: 200\r\n\r\n"
    stop = threading.Event()
    server = _RawServer(_drip(head, head_too=head_too, stop=stop))
    monkeypatch.setattr(feed, "FETCH_DEADLINE", 1.5)
    try:
        started = time.monotonic()
        with pytest.raises(ArticleError) as info:
            load_article(server.url)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        server.close()
    assert str(info.value) == f"{server.url}: cannot fetch the feed: no complete answer in 1.5 s"
    assert elapsed < 5, elapsed  # the drip alone would take 50 s or more


CODE_MD = r"""---
title: Quoting in Python
summary: 'Write \"hi\" with backslashes'
---
Escaping quotes inside a string:

```python
print("say \"hi\"")
```

And inline: `"\""` is one quote.
"""


def test_markdown_code_keeps_its_backslashes(tmp_path: Path, settings: Settings) -> None:
    """The plain-text export's repair (``\\"`` → ``"``) is not applied to Markdown."""
    path = tmp_path / "code.md"
    path.write_text(CODE_MD, encoding="utf-8")
    article = load_article(str(path))
    assert article.summary == r"Write \"hi\" with backslashes"
    issue = compose_issue(article, settings, send_week=WEEK)
    assert r'print("say \"hi\"")' in issue.text_template
    html = issue.html_template.replace("&quot;", '"').replace("&#34;", '"')
    assert r'print("say \"hi\"")' in html
    assert r'"\""' in html and r'"\""' in issue.text_template
    assert r'print("say \"hi\"")' in issue.archive_html.replace("&quot;", '"')
