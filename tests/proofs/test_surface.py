"""Issue #21's public surface is where a user looks for it: the README and ``--help``.

The keys (``editors``, ``proof_hours``, ``approval``, ``grace_hours``, ``daily_quota``,
``warmup_start``, ``warmup_factor``), the commands ``issues approve`` / ``issues veto`` with
``--by`` / ``--reason``, the ``[Proof]`` subject and ``preview --check-links``; the ``--help``
texts are read from real CLI subprocesses, the README and docs/web.md from the checkout.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT, run_cli
from weekly_mailer.config import FIELDS

KEYS = ("editors", "proof_hours", "approval", "grace_hours", "daily_quota", "warmup_start",
        "warmup_factor")  # fmt: skip
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def helps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The ``--help`` of each command the surface belongs to."""
    cwd = tmp_path_factory.mktemp("help")
    out = {}
    for command in ("run", "worker", "issues", "issues approve", "issues veto", "issues show",
                    "preview"):  # fmt: skip
        result = run_cli(*command.split(), "--help", cwd=cwd)
        assert result.returncode == 0, result.stderr
        out[command] = " ".join(result.stdout.split())  # click wraps lines: compare words
    return out


@pytest.mark.parametrize("key", KEYS)
def test_each_key_is_a_setting_in_the_readme_table_and_in_help(
    key: str, helps: dict[str, str]
) -> None:
    assert key in FIELDS
    row = f"| `{key}` | `WEEKLY_MAILER_{key.upper()}` |"
    assert row in README, f"{key}: no row {row!r} in the README's configuration table"
    assert any(re.search(rf"\b{key}\b", text) for text in helps.values()), (
        f"{key} is in no --help"
    )


def test_approve_and_veto_with_by_and_reason(helps: dict[str, str]) -> None:
    listed = helps["issues"]
    assert re.search(r"\bapprove\b", listed) and re.search(r"\bveto\b", listed)
    assert "--by NAME" in helps["issues approve"]
    assert "--by NAME" in helps["issues veto"] and "--reason TEXT" in helps["issues veto"]
    assert re.search(r"weekly-mailer issues approve .*--by ", README)
    assert re.search(r"weekly-mailer issues veto .*--by .*--reason ", README)


def test_the_proof_subject_and_the_link_check(helps: dict[str, str]) -> None:
    assert "[Proof]" in helps["run"] and "[Proof]" in README
    assert "--check-links" in helps["preview"]
    assert "weekly-mailer preview" in README and "--check-links" in README


def test_the_proof_route_is_documented_with_what_get_and_post_do() -> None:
    web = (ROOT / "docs" / "web.md").read_text(encoding="utf-8")
    assert "`GET|POST /proof/<token>`" in web
    section = web.split("`GET|POST /proof/<token>`", 1)[1].split("\n## ", 1)[0]
    assert "| `GET`, `HEAD` | a page only" in section
    assert "| `POST` | records the decision" in section

