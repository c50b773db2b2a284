"""What `bounces ingest` prints: third-party libraries (flufl.bounce reads every text bounce)
log at WARNING unless log_level = "DEBUG", and --dry-run is one line per message, then the
summary. Real subprocesses of the CLI on a maildir of the 65-message corpus."""

from __future__ import annotations

import mailbox
import re
from pathlib import Path

from tests.conftest import ROOT, run_cli

CORPUS = ROOT / "tests" / "data" / "bounces"


def _maildir(workdir: Path) -> int:
    box = mailbox.Maildir(str(workdir / "reports"), create=True)
    names = sorted(CORPUS.glob("*.eml"))
    for path in names:
        box.add(path.read_bytes())
    return len(names)


def test_ingest_prints_no_library_chatter_and_dry_run_is_a_line_a_message(workdir: Path) -> None:
    assert run_cli("init", cwd=workdir).returncode == 0
    count = _maildir(workdir)

    r = run_cli("bounces", "ingest", "--dry-run", "reports", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no INFO line of flufl.bounce (or anyone) at the default INFO
    lines = r.stdout.splitlines()
    numbered = [line for line in lines if re.match(r"^\d+ ", line)]
    assert [int(line.split()[0]) for line in numbered] == list(range(1, count + 1))
    rest = lines[count:]
    assert lines[:count] == numbered  # the message lines first, one each, then the summary
    assert rest[0].startswith(f"Dry run, nothing changed. {count} messages: ")
    assert rest[1].startswith("By kind: ")
    assert all(not re.match(r"^\d+ ", line) for line in rest)

    r = run_cli("bounces", "ingest", "reports", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.startswith(f"{count} messages: ")


def test_debug_lets_the_libraries_speak(workdir: Path) -> None:
    assert run_cli("init", cwd=workdir).returncode == 0
    _maildir(workdir)
    env = {"WEEKLY_MAILER_LOG_LEVEL": "DEBUG"}
    r = run_cli("bounces", "ingest", "--dry-run", "reports", cwd=workdir, env=env)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^\S+ \S+ (DEBUG|INFO) flufl\.bounce", r.stderr, re.MULTILINE), r.stderr[:500]
