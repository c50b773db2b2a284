"""``cli/`` and ``web/`` parse, call a service and present: they build no SQL of their own.

The lead's delivery files of this round (cli/send.py, cli/_delivery.py, cli/daemon.py,
web/outbox.py) are checked too: none of them builds SQL either today.
"""

from __future__ import annotations

import ast
from pathlib import Path

import weekly_mailer

ROOT = Path(weekly_mailer.__file__).parent
SQL_NAMES = {"select", "insert", "update", "delete", "func", "text", "exists", "and_", "or_"}
SESSION_CALLS = {"execute", "scalar", "scalars", "query", "add", "add_all", "delete", "get"}


def _sql_in(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            if node.module != "sqlalchemy.exc" and not (node.module or "").startswith(
                "sqlalchemy.engine"
            ):
                names = {a.name for a in node.names}
                if (
                    node.module == "sqlalchemy"
                    and names & SQL_NAMES
                    or node.module
                    in (
                        "sqlalchemy.sql",
                        "sqlalchemy.sql.expression",
                    )
                ):
                    found.append(f"{path.name}:{node.lineno} imports {sorted(names)}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SESSION_CALLS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "session"
        ):
            found.append(f"{path.name}:{node.lineno} session.{node.func.attr}(…)")
    return found


def test_cli_and_web_build_no_sql() -> None:
    files = sorted((ROOT / "cli").glob("*.py")) + sorted((ROOT / "web").glob("*.py"))
    assert len(files) > 10
    found = [hit for path in files for hit in _sql_in(path)]
    assert found == []
