"""`weekly-mailer doctor` says what to fix."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import init_in, run_cli


def test_doctor_on_fresh_init(workdir: Path) -> None:
    init_in(workdir)
    result = run_cli("doctor", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    secret_key is set" in result.stdout
    assert "ok    database is reachable and migrated" in result.stdout
    assert "warn  backend_url uses file://" in result.stdout
    assert "warn  list_id 'weekly.localhost' is under a reserved name" in result.stdout
    assert result.stdout.rstrip().endswith("0 to fix, 6 warnings.")


def test_doctor_reports_what_to_fix(workdir: Path) -> None:
    env = {
        "WEEKLY_MAILER_ARTICLE_SOURCE": "missing-feed.xml",
        "WEEKLY_MAILER_DKIM_DOMAIN": "example.net",
    }
    result = run_cli("doctor", cwd=workdir, env=env)
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL  secret_key is empty: run `weekly-mailer init` to generate one" in out
    assert "FAIL  database: the database is empty: run `weekly-mailer init`" in out
    assert "FAIL  article_source 'missing-feed.xml' does not exist" in out
    assert "FAIL  DKIM needs all of dkim_domain, dkim_selector and dkim_key_file" in out
    assert "Traceback" not in result.stderr
