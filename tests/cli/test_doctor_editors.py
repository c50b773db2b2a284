"""`weekly-mailer doctor` on the editors' proofs and approval, through the CLI subprocess."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import init_in, run_cli


def test_doctor_says_what_the_editors_get_and_what_will_not_work_as_meant(
    workdir: Path,
) -> None:
    init_in(workdir)
    env = {
        "WEEKLY_MAILER_EDITORS": "ann@news.example.net, bob@example.org",
        "WEEKLY_MAILER_PROOF_HOURS": "6.5",
        "WEEKLY_MAILER_APPROVAL": "required",
        "WEEKLY_MAILER_GRACE_HOURS": "0",
        "WEEKLY_MAILER_BASE_URL": "http://127.0.0.1:8000",
    }
    result = run_cli("doctor", cwd=workdir, env=env)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr  # warnings, nothing to fix
    assert (
        "ok    editors ann@news.example.net, bob@example.org: a [Proof] 6.5 hours before "
        "each send, approval required" in out
    )
    assert "warn  editor bob@example.org uses the placeholder domain 'example.org'" in out
    assert "warn  editor ann@" not in out
    assert (
        "warn  approval = required: the proof's approve and veto links point at base_url "
        "http://127.0.0.1:8000, which editors cannot open from their mail" in out
    )
    assert "warn  approval = required with grace_hours = 0: an approval that comes" in out


def test_doctor_warns_of_editors_who_get_no_proof(workdir: Path) -> None:
    init_in(workdir)
    env = {"WEEKLY_MAILER_EDITORS": "ann@news.example.net", "WEEKLY_MAILER_PROOF_HOURS": "0"}
    result = run_cli("doctor", cwd=workdir, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "warn  editors are set (ann@news.example.net) but proof_hours = 0: no proof goes out"
        in result.stdout
    )
    # No editors: no line about them at all (a fresh init's findings stay as they were).
    plain = run_cli("doctor", cwd=workdir)
    assert "editor" not in plain.stdout and "approval" not in plain.stdout


def test_doctor_refuses_an_approval_nobody_can_give_in_one_line(workdir: Path) -> None:
    init_in(workdir)
    for env, line in [
        ({"WEEKLY_MAILER_APPROVAL": "required"},
         "Error: approval: 'required' needs editors and proof_hours above 0"),
        ({"WEEKLY_MAILER_APPROVAL": "veto", "WEEKLY_MAILER_EDITORS": "ann@news.example.net",
          "WEEKLY_MAILER_PROOF_HOURS": "0"},
         "Error: approval: 'veto' needs editors and proof_hours above 0"),
        ({"WEEKLY_MAILER_EDITORS": "ann@news.example.net, not an address"},
         "Error: editors: "),
    ]:  # fmt: skip
        result = run_cli("doctor", cwd=workdir, env=env)
        assert result.returncode == 2, (env, result.stdout, result.stderr)
        errors = [x for x in result.stderr.splitlines() if x.strip()]
        assert len(errors) == 1 and errors[0].startswith(line), (env, errors)
        assert "Traceback" not in result.stderr
