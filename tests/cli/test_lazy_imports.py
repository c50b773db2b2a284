"""`weekly-mailer --help` lists every command without importing what the commands use: the
database layer, the bounce parser, the web app, rich. A command loads its own, when it runs."""

from __future__ import annotations

import json
import subprocess
import sys

# Run in a fresh interpreter: this test process has imported everything already.
PROBE = """
import json, sys
from weekly_mailer.cli import main
try:
    main(sys.argv[1:], prog_name="weekly-mailer")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""

HEAVY = (
    "sqlalchemy",
    "alembic",
    "rich",
    "jinja2",
    "flask",
    "weekly_mailer.store",
    "weekly_mailer.bounces",
    "weekly_mailer.subscribers",
    "weekly_mailer.issues",
    "weekly_mailer.proofs",
    "weekly_mailer.preflight",
    "weekly_mailer.delivery",
    "weekly_mailer.web",
    "weekly_mailer.scheduler",
)


def _loaded(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    help_text, _, modules = out.stdout.rstrip().rpartition("\n")
    assert "Commands:" in help_text or "Options:" in help_text, out.stdout
    return json.loads(modules)


def test_help_lists_every_command_without_loading_what_they_use() -> None:
    modules = _loaded("--help")
    assert "weekly_mailer.cli.bounces" in modules  # each command's module is read for its help
    heavy = [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert not heavy, heavy


def test_a_subcommands_help_loads_no_service_either() -> None:
    for group in ("subscribers", "issues", "bounces"):
        modules = _loaded(group, "--help")
        assert not [m for m in modules if m == "sqlalchemy" or m.startswith("weekly_mailer.store")]
