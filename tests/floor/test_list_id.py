"""``list_id`` defaults to a name under the From domain (``weekly.<domain>``), an explicit value
is kept, and ``doctor`` warns on a reserved name or one that is not under the From domain."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import init_in, run_cli
from weekly_mailer.config import Settings, load_settings


def test_the_default_is_under_the_from_domain() -> None:
    env = {"WEEKLY_MAILER_FROM_ADDRESS": "The Hedge <News@Hedge.Example.net>"}
    assert load_settings(environ=env).list_id == "weekly.hedge.example.net"
    assert Settings(from_address="a@b.org").list_id == "weekly.b.org"


def test_an_explicit_value_is_kept(tmp_path: Path) -> None:
    cfg = tmp_path / "weekly_mailer.toml"
    cfg.write_text('from_address = "a@news.org"\nlist_id = "letters.other.org"\n')
    assert load_settings(cfg, environ={}).list_id == "letters.other.org"
    env = {"WEEKLY_MAILER_LIST_ID": "weekly.localhost", "WEEKLY_MAILER_FROM_ADDRESS": "a@b.org"}
    assert load_settings(environ=env).list_id == "weekly.localhost"  # asked for: kept


def test_a_derived_value_follows_a_new_from_address_an_explicit_one_does_not() -> None:
    derived = Settings(from_address="a@one.org")
    assert derived.replace(from_address="a@two.org").list_id == "weekly.two.org"
    explicit = Settings(from_address="a@one.org", list_id="mine.one.org")
    assert explicit.replace(from_address="a@two.org").list_id == "mine.one.org"


def test_the_header_carries_it(settings: Settings) -> None:
    from weekly_mailer.compose.message import header_plan

    plan = dict(header_plan(settings.replace(list_id=""), subject="s", boundary="b"))
    assert plan["List-Id"] == "In Brief <weekly.example.org>"


def _doctor_line(workdir: Path, env: dict[str, str]) -> str:
    init_in(workdir)
    result = run_cli("doctor", cwd=workdir, env=env)
    assert "Traceback" not in result.stderr
    [line] = [x for x in result.stdout.splitlines() if x[6:].startswith("list_id")]
    return line


@pytest.mark.parametrize(
    "list_id",
    ["weekly.localhost", "news.test", "a.example", "x.invalid", "weekly.example.com",
     "example.org", "weekly.example.net"],
)  # fmt: skip
def test_doctor_warns_on_a_reserved_name(workdir: Path, list_id: str) -> None:
    env = {"WEEKLY_MAILER_FROM_ADDRESS": "News <news@hedge.org>", "WEEKLY_MAILER_LIST_ID": list_id}
    line = _doctor_line(workdir, env)
    assert line == (
        f"warn  list_id {list_id!r} is under a reserved name nobody owns: set list_id to a name "
        "under your own domain, e.g. weekly.hedge.org (RFC 2919)"
    )


def test_doctor_warns_on_a_name_not_under_the_from_domain(workdir: Path) -> None:
    env = {"WEEKLY_MAILER_FROM_ADDRESS": "news@hedge.org", "WEEKLY_MAILER_LIST_ID": "w.other.org"}
    line = _doctor_line(workdir, env)
    assert line.startswith("warn  list_id 'w.other.org' is not under the From domain 'hedge.org'")
    assert "e.g. weekly.hedge.org" in line


@pytest.mark.parametrize("list_id", ["", "letters.hedge.org", "hedge.org"])
def test_doctor_is_content_with_a_name_under_the_from_domain(workdir: Path, list_id: str) -> None:
    env = {"WEEKLY_MAILER_FROM_ADDRESS": "news@hedge.org", "WEEKLY_MAILER_LIST_ID": list_id}
    assert _doctor_line(workdir, env) == f"ok    list_id {list_id or 'weekly.hedge.org'}"
