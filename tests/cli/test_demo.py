"""`weekly-mailer demo` from the README, in a subprocess, in an empty folder."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_demo_runs_the_whole_job_in_a_fresh_folder(tmp_path: Path) -> None:
    out = run_cli("demo", cwd=tmp_path, env={"COLUMNS": "120"})
    assert out.returncode == 0, out.stderr
    root = tmp_path / "demo"
    emls = sorted((root / "outbox").glob("*.eml"))
    assert len(emls) == 300
    assert f"Messages: 300 .eml files in {root / 'outbox'}" in out.stdout
    assert f"Preview:  {root / 'preview.html'}" in out.stdout
    msg = email.message_from_bytes(emls[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "The Lighthouse Keeper's Logbook"
    assert msg["To"].addresses[0].domain == "example.org"
    assert msg["List-Unsubscribe"].startswith("<http://127.0.0.1:8080/unsubscribe/")
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    preview = (root / "preview.html").read_text()
    assert "Lighthouse Keeper" in preview and "<html" in preview
    # Again in the same folder: nothing new is sent.
    again = run_cli("demo", cwd=tmp_path, env={"COLUMNS": "120"})
    assert again.returncode == 0, again.stderr
    assert "This run: 0 sent" in again.stdout
    assert len(list((root / "outbox").glob("*.eml"))) == 300
    shown = run_cli("--config", str(root / "weekly_mailer.toml"), "issues", "show", "1",
                    cwd=tmp_path)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "status sent" in shown.stdout


def test_demo_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    out = run_cli("demo", "mine", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("Error: ") and "holds no demo" in out.stderr
