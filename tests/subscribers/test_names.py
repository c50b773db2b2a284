"""The one name rule at every door: what the composer refuses, no door accepts.

U+007F (DEL) and the C1 controls U+0080-U+009F passed the sign-up form, ``subscribers add`` and
``import`` and then failed every weekly send. Each door now refuses them in one clear line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import init_in, run_cli
from tests.support.web import sign_up
from weekly_mailer.compose.headers import clean_display_name
from weekly_mailer.compose.names import name_problem
from weekly_mailer.errors import ComposeError
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Subscriber

pytest_plugins = ["tests.support.web_fixtures"]

CONTROLS = ["\x7f", "\x80", "\x85", "\x9b", "\x9f"]


@pytest.mark.parametrize("ch", CONTROLS)
def test_the_rule_and_the_composer_agree(ch: str) -> None:
    name = f"Ann{ch}Lee"
    assert name_problem(name) == f"the name contains the control character U+{ord(ch):04X}"
    with pytest.raises(ComposeError):
        clean_display_name(name)
    assert name_problem("Ann Lee \u00e9\u200d") is None  # printable Unicode, joiners: fine


def _one_line_error(result: object) -> str:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return str(lines[0])


def test_subscribers_add_refuses_a_control_character_in_the_name(workdir: Path) -> None:
    init_in(workdir)
    for ch in ("\x7f", "\x9b"):
        result = run_cli("subscribers", "add", "ann@example.org", "--name", f"Ann{ch}", cwd=workdir)
        assert result.returncode == 1
        assert _one_line_error(result) == (
            f"Error: the name contains the control character U+{ord(ch):04X}"
        )
    assert run_cli("subscribers", "count", cwd=workdir).stdout == "0\n"


def test_import_refuses_those_rows_by_line_and_keeps_the_good_ones(workdir: Path) -> None:
    init_in(workdir)
    (workdir / "people.csv").write_text(
        "email,name\nann@example.org,Ann\nbob@example.org,Bob\x7f\ncy@example.org,C\x80y\n"
        "dee@example.org,Dee\n",
        encoding="utf-8",
    )
    (workdir / "people.json").write_text(
        '[{"email": "eve@example.org", "name": "Eve\\u009f"}]', encoding="utf-8"
    )
    result = run_cli("subscribers", "import", "people.csv", "--confirmed", cwd=workdir)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    assert "people.csv:3: the name contains the control character U+007F" in out
    assert "people.csv:4: the name contains the control character U+0080" in out
    assert "Imported: 2 added, 0 already known, 2 bad rows." in out
    result = run_cli("subscribers", "import", "people.json", cwd=workdir)
    out = result.stdout + result.stderr
    assert "people.json:item 1: the name contains the control character U+009F" in out
    assert run_cli("subscribers", "count", cwd=workdir).stdout == "2\n"


@pytest.mark.parametrize("ch", ["\x7f", "\x9b"])
def test_the_sign_up_form_refuses_them_with_its_error_message(
    client: FlaskClient, database: Database, ch: str
) -> None:
    response = sign_up(client, "ann@example.org", name=f"Ann{ch}Lee")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f"the name contains the control character U+{ord(ch):04X}" in page
    assert 'value="ann@example.org"' in page  # the form again, filled in
    with database.sessions.begin() as session:
        assert session.scalars(select(Subscriber)).first() is None


def test_a_byte_that_is_not_utf8_on_the_command_line_is_one_line(workdir: Path) -> None:
    """argv is decoded with surrogateescape: ``b"Ann\\xff"`` arrives as ``"Ann\\udcff"``."""
    init_in(workdir)
    name = b"Ann\xff".decode("utf-8", "surrogateescape")
    result = run_cli("subscribers", "add", "ann@example.org", "--name", name, cwd=workdir)
    assert result.returncode == 1
    assert _one_line_error(result) == "Error: the name is not valid UTF-8 text (byte 0xFF)"
    address = b"ann\xe9@example.org".decode("utf-8", "surrogateescape")
    for args in (("add", address), ("unsubscribe", address)):
        result = run_cli("subscribers", *args, cwd=workdir)
        assert result.returncode == 1
        assert _one_line_error(result) == (
            "Error: the address is not valid UTF-8 text (byte 0xE9)"
        )
    assert run_cli("subscribers", "count", cwd=workdir).stdout == "0\n"
