"""A workspace for end-to-end `send` runs: config, database, subscribers, article."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from tests.conftest import ARTIFACTS
from tests.support.schema import migrate
from tests.support.smtpd import Received
from weekly_mailer import subscribers as subs
from weekly_mailer.config import load_settings
from weekly_mailer.store.db import Database

ARTICLE = """---
title: Notes from the allotment
date: 2026-11-20
author: Robin Field
summary: What a small plot teaches about patience.
---
The allotment is quiet in November. The beans are long gone, the last leeks stand in a row,
and the compost heap steams on cold mornings.

Every plot holder learns the same lesson: most of the work is waiting. You cannot hurry frost,
and you cannot hurry soil. [Read more about the site](https://example.org/allotment).
"""

_MID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def message_id(data: bytes) -> str:
    m = _MID.search(data)
    assert m, data[:500]
    return m.group(1).decode()


class Workspace:
    """A folder with weekly_mailer.toml, a migrated SQLite database and active subscribers."""

    def __init__(self, root: Path, *, backend_url: str, **settings: Any) -> None:
        self.root = root
        self.db_path = root / "mail.db"
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{self.db_path}",
            "backend_url": backend_url,
            "secret_key": "e2e-secret",
            "from_address": "Allotment Notes <news@example.org>",
            "base_url": "https://news.example.org",
            "postal_address": "1 Example Street, Springfield",
            "article_source": str(root / "article.md"),
            "log_level": "WARNING",
        }
        values.update(settings)
        self.config = root / "weekly_mailer.toml"
        self.config.write_text(tomli_w.dumps(values))
        (root / "article.md").write_text(ARTICLE)
        self.settings = load_settings(self.config, environ={})
        migrate(self.settings.database_url)

    def add_subscribers(self, n: int, *, domain: str = "example.org") -> list[str]:
        emails = [f"reader{i:05d}@{domain}" for i in range(n)]
        data = "email,name\n" + "".join(f"{e},Reader {i}\n" for i, e in enumerate(emails))
        with Database(self.settings) as db, db.sessions.begin() as session:
            report = subs.import_file(session, data.encode(), filename="x.csv", confirmed=True)
            assert not report.errors
        return emails

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("WEEKLY_MAILER_") or k.startswith("WEEKLY_MAILER_TEST_")
        }
        env["WEEKLY_MAILER_CONFIG"] = str(self.config)
        env["COLUMNS"] = "120"
        return env

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "weekly_mailer", *args],
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "weekly_mailer", *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ledger(self) -> dict[str, list[tuple[str, int, int | None]]]:
        """status -> [(email, attempts, last_code)], read with plain sqlite3."""
        con = sqlite3.connect(self.db_path, timeout=30)
        try:
            rows = con.execute(
                "SELECT d.status, s.email, d.attempts, d.last_code FROM delivery d "
                "JOIN subscriber s ON s.id = d.subscriber_id"
            ).fetchall()
        finally:
            con.close()
        out: dict[str, list[tuple[str, int, int | None]]] = {}
        for status, email, attempts, code in rows:
            out.setdefault(status, []).append((email, attempts, code))
        return out

    def sent_emails(self) -> set[str]:
        return {e for e, _, _ in self.ledger().get("sent", [])}


def recipients(messages: list[Received]) -> Counter[str]:
    return Counter(m.rcpt_tos[0].lower() for m in messages)


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    proc.send_signal(sig)
    proc.communicate(timeout=30)


def save_artifact(name: str, data: dict[str, Any]) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"\n{name}: {json.dumps(data, sort_keys=True)}")
    return path
