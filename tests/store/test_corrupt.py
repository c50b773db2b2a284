"""A corrupt or truncated SQLite file: one line naming the file, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import init_in, run_cli


def _truncate(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])


def _garbage(db: Path) -> None:
    db.write_bytes(b"this is not a database, it is a shopping list\n" * 100)


@pytest.mark.parametrize("damage", [_truncate, _garbage])
def test_commands_say_which_file_is_damaged(workdir: Path, damage: object) -> None:
    init_in(workdir)
    assert run_cli("subscribers", "add", "ann@example.org", cwd=workdir).returncode == 0
    damage(workdir / "weekly_mailer.db")  # type: ignore[operator]
    for args in (("subscribers", "count"), ("send", "--yes"), ("db", "upgrade")):
        result = run_cli(*args, cwd=workdir)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "'weekly_mailer.db'" in result.stderr, result.stderr
        assert "check database_url" in result.stderr
        assert ("is not a database" in result.stderr) or ("malformed" in result.stderr)
    doctor = run_cli("doctor", cwd=workdir)
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr
    assert "FAIL  database: cannot open the database 'weekly_mailer.db'" in doctor.stdout
