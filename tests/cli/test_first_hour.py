"""A new user's first hour (issue #23): what they meet, each point as they would see it."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.send import Workspace, wait_for
from tests.support.smtpd import SMTPServer
from tests.support.web_server import Server, serve_env
from tests.support.web_server import run_cli as web_cli


def test_the_confirmation_email_keeps_quoted_printable_lines_within_76(workdir: Path) -> None:
    assert run_cli("init", cwd=workdir).returncode == 0
    with SMTPServer() as server:
        env = {"WEEKLY_MAILER_BACKEND_URL": server.url}
        added = run_cli("subscribers", "add", "long.address.for.wrapping@example.org",
                        cwd=workdir, env=env)  # fmt: skip
        assert added.returncode == 0, added.stderr
        (got,) = server.received()
    head, _, body = got.data.partition(b"\r\n\r\n")
    assert b"quoted-printable" in body
    lines = body.split(b"\r\n")
    assert max(len(line) for line in lines) <= 76, max(lines, key=len)  # RFC 2045 6.7
    text = got.message.get_body(("plain",))
    assert text is not None and "/confirm/" in text.get_content()  # the link survives wrapping


def test_issues_list_fits_80_columns_and_pipes_plain_text(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, backend_url=f"file://{tmp_path / 'outbox'}")
    ws.add_subscribers(3)
    assert ws.run("send", "--yes").returncode == 0
    env = {k: v for k, v in ws.env().items() if k not in ("COLUMNS", "LINES")}
    listed = subprocess.run(
        [sys.executable, "-m", "weekly_mailer", "issues", "list"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["id", "week", "status", "subject", "queued", "sending", "sent",
                                "deferred", "failed", "skipped"]  # fmt: skip
    assert lines[1].split()[:3] == ["1", lines[1].split()[1], "sent"]
    assert lines[1].split()[-6:] == ["0", "0", "3", "0", "0", "0"]
    assert max(len(line) for line in lines) <= 80
    assert not any("\u2500" <= ch <= "\u257f" for ch in listed.stdout)  # no box drawing


ARTICLE = """---
title: Notes from the allotment
date: 2026-11-20
---
{heading} Notes from the allotment

The beans are up.

| crop | rows | state |
|---|---|---|
| beans | 4 | up |
| runner beans | 12 | sown |
"""


def test_a_front_matter_title_and_the_same_heading_print_it_once(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, backend_url=f"file://{tmp_path / 'outbox'}")
    (tmp_path / "article.md").write_text(ARTICLE.format(heading="#"))
    shown = ws.run("preview")
    assert shown.returncode == 0, shown.stderr
    html = (tmp_path / "preview.html").read_text(encoding="utf-8")
    text = (tmp_path / "preview.txt").read_text(encoding="utf-8")
    assert html.count("Notes from the allotment</h") == 1
    assert text.upper().count("NOTES FROM THE ALLOTMENT") == 1
    assert "printed twice" not in shown.stdout
    # A heading that still repeats it (a level-2 one, kept in the body) is a lint warning.
    (tmp_path / "article.md").write_text(ARTICLE.format(heading="##"))
    warned = ws.run("preview")
    assert (
        "warning: the title 'Notes from the allotment' is printed twice: the article's body "
        "repeats it as a heading"
    ) in warned.stdout


def test_a_markdown_table_is_aligned_rows_in_text_and_styled_cells_in_html(
    tmp_path: Path,
) -> None:
    ws = Workspace(tmp_path, backend_url=f"file://{tmp_path / 'outbox'}")
    (tmp_path / "article.md").write_text(ARTICLE.format(heading="#"))
    assert ws.run("preview").returncode == 0
    text = (tmp_path / "preview.txt").read_text(encoding="utf-8")
    assert (
        "crop          rows  state\n"
        "------------  ----  -----\n"
        "beans         4     up\n"
        "runner beans  12    sown\n"
    ) in text
    html = (tmp_path / "preview.html").read_text(encoding="utf-8")
    cells = re.findall(r"(<t[dh][^>]*>)(?:crop|rows|state|beans|4|up|runner beans|12|sown)<", html)
    assert len(cells) == 9 and all("padding" in c and "border-bottom" in c for c in cells)


def test_counts_agree_with_their_nouns_and_dates_read_yyyy_mm_dd(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, backend_url=f"file://{tmp_path / 'outbox'}")
    ws.add_subscribers(1)
    assert ws.run("send", "--yes").returncode == 0
    dry = ws.run("issues", "archive", "--before", "2099-01-01", "--dry-run")
    assert "Would archive 1 row of 1 issue." in dry.stdout, dry.stdout
    helped = ws.run("issues", "archive", "--help")
    assert "--before YYYY-MM-DD" in helped.stdout and "%Y" not in helped.stdout
    bad = ws.run("issues", "archive", "--before", "2026-13-01", "--dry-run")
    assert bad.returncode == 2 and "%Y" not in bad.stderr
    assert "'2026-13-01' is not a date as YYYY-MM-DD" in bad.stderr


@pytest.mark.slow
def test_the_advice_after_a_failed_confirmation_holds_once_serve_has_sent_it(
    tmp_path: Path,
) -> None:
    server = SMTPServer()  # not started yet: the mail server is down
    env = serve_env(tmp_path, backend_url=server.url)
    assert web_cli(tmp_path, env, "db", "upgrade").returncode == 0
    added = web_cli(tmp_path, env, "subscribers", "add", "late@example.org")
    assert added.returncode == 1
    advice = added.stderr.strip().splitlines()[-1]
    assert "a running `weekly-mailer serve` (or `run`) sends it" in advice
    with server, Server(tmp_path, env):
        assert wait_for(lambda: len(server.received()) == 1, timeout=30)  # as advised
        again = web_cli(tmp_path, env, "subscribers", "send-confirmations", "late@example.org")
        assert "sent to this address today already" in again.stdout
        assert len(server.received()) == 1  # once, not twice


def test_send_on_a_sunday_says_whose_week_and_when_the_daemon_sends(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from weekly_mailer.cli._common import AppContext
    from weekly_mailer.cli.send import send

    ws = Workspace(tmp_path, backend_url=f"file://{tmp_path / 'outbox'}")
    ws.add_subscribers(2)
    sunday = dt.datetime(2026, 12, 6, 20, 0, tzinfo=dt.UTC)  # Sunday noon in Los Angeles
    app = AppContext(str(ws.config), clock=lambda: sunday)
    try:
        result = CliRunner().invoke(send, ["--yes"], obj=app)
    finally:
        app.close()
    assert result.exit_code == 0, result.output
    assert (
        "This is the issue of the week of Wed 2026-12-02 (its scheduled send has passed); the "
        "daemon's next weekly send (`weekly-mailer run`) is Wed 2026-12-09 18:00 PST, for the "
        "week of 2026-12-09."
    ) in result.output
    from weekly_mailer.scheduler import WeeklySchedule, format_fire_time

    (fire,) = WeeklySchedule.from_settings(ws.settings).fire_times(sunday, 1)
    assert format_fire_time(fire, ws.settings.zone).startswith("Wed 2026-12-09 18:00 PST")
