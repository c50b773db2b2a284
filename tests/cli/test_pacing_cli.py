"""The pace seen from the command line: ``send`` under ``daily_quota``, ``issues show``'s
expected finish, ``doctor``'s pacing line and the keys' validation."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner, Result

from tests.support.send import Workspace
from weekly_mailer.cli import main


def invoke(ws: Workspace, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(ws.config), *args])


def test_send_under_a_daily_quota_leaves_the_rest_waiting_and_show_says_when(
    workdir: Path,
) -> None:
    ws = Workspace(workdir, backend_url=f"file://{workdir / 'outbox'}", daily_quota=5)
    ws.add_subscribers(12)
    sent = invoke(ws, "send", "--yes")
    assert sent.exit_code == 0, sent.output
    assert len(list((workdir / "outbox").glob("*.eml"))) == 5
    shown = invoke(ws, "issues", "show", "1")
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.output.splitlines() if x.startswith("Pacing"))
    assert re.fullmatch(
        r"Pacing \(daily_quota 5\): 7 waiting, 0 may go now; expected finish "
        r"\d{4}-\d\d-\d\d \d\d:\d\d UTC",
        line,
    ), line


def test_a_bad_warmup_factor_names_the_key(workdir: Path) -> None:
    ws = Workspace(workdir, backend_url=f"file://{workdir / 'outbox'}")
    ws.config.write_text(ws.config.read_text() + "warmup_factor = 1\n")
    out = invoke(ws, "issues", "list")
    assert out.exit_code == 2
    assert "warmup_factor: must be more than 1" in out.output


def test_doctor_shows_the_pacing_in_force(workdir: Path) -> None:
    ws = Workspace(workdir, backend_url=f"file://{workdir / 'outbox'}", daily_quota=1000,
                   warmup_start=500, warmup_factor=2)  # fmt: skip
    out = invoke(ws, "doctor")
    line = next(x for x in out.output.splitlines() if "pacing:" in x)
    assert line.endswith(
        "pacing: send_rate unlimited, daily_quota 1,000 per rolling 24 hours, warm-up from 500 "
        "x2 a sending day (not started), the smaller wins"
    ), line
    ws.add_subscribers(3)
    assert invoke(ws, "send", "--yes").exit_code == 0
    out = invoke(ws, "doctor")
    assert "warm-up from 500 x2 a sending day (over: day 1 covered the list)" in out.output
