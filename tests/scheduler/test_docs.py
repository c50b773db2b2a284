"""docs/operations.md and the systemd unit agree with each other and with the code."""

from __future__ import annotations

import configparser
import inspect
import re
from pathlib import Path

import click

from weekly_mailer.cli import main
from weekly_mailer.delivery.runner import Runner
from weekly_mailer.scheduler.daemon import WebServer

DOCS = Path(__file__).resolve().parents[2] / "docs"
OPERATIONS = (DOCS / "operations.md").read_text()
UNIT_TEXT = (DOCS / "weekly-mailer.service").read_text()


def systemd_section() -> str:
    return OPERATIONS[OPERATIONS.index("## systemd") : OPERATIONS.index("## Upgrades")]


def test_the_install_steps_write_the_unit_file_itself() -> None:
    steps = systemd_section()
    heredoc = re.search(r"<<'EOF'\n(.*?)\nEOF\n", steps, re.DOTALL)
    assert heredoc is not None
    assert heredoc.group(1) + "\n" == UNIT_TEXT  # no checkout needed, and never out of date
    assert "cp docs/" not in steps


def test_the_install_steps_hand_the_folder_over_before_init() -> None:
    lines = systemd_section().splitlines()
    commands = [line[2:].split("  #")[0] for line in lines if line.startswith("$ ")]
    chown = next(i for i, c in enumerate(commands) if "chown" in c)
    init = next(i for i, c in enumerate(commands) if " init" in c)
    assert chown < init
    assert "/srv/weekly-mailer" in commands[chown]
    assert "cd /srv/weekly-mailer" in commands[init]  # init writes ./weekly_mailer.toml there
    assert "sudo -u weekly-mailer" in commands[init]


def test_the_unit_is_sane() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT_TEXT)
    service = parser["Service"]
    assert service["User"] == "weekly-mailer"
    assert service["WorkingDirectory"] == "/srv/weekly-mailer"
    assert service["ExecStart"].startswith("/srv/weekly-mailer/venv/bin/weekly-mailer run ")
    assert service["ExecStartPre"] == "/srv/weekly-mailer/venv/bin/weekly-mailer db upgrade"
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert "/srv/weekly-mailer" in service["ReadWritePaths"]
    # Long enough for the stop: the worker finishes the messages in flight, then the web server.
    worker = inspect.signature(Runner.close).parameters["timeout"].default
    web = inspect.signature(WebServer.stop).parameters["timeout"].default
    assert int(service["TimeoutStopSec"]) >= worker + web + 5
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_every_option_the_doc_names_exists() -> None:
    named = re.findall(r"`weekly-mailer ([a-z]+)\b([^`]*)`", OPERATIONS)
    assert named
    checked = 0
    for command_name, rest in named:
        command = main.get_command(click.Context(main), command_name)
        assert command is not None, command_name
        if isinstance(command, click.Group):
            continue
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        for option in re.findall(r"--[a-z][a-z-]*", rest):
            assert option in options, f"weekly-mailer {command_name} {option}"
            checked += 1
    assert checked >= 1  # send --force-week, …
