"""The proofs' parts: the config keys, the link check's verdicts, ``preview --check-links``
(a subprocess), the editor's subscriber row, and the CLI refusals."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.proofs.support import link_server, write_article
from weekly_mailer import subscribers as subs
from weekly_mailer.clock import utcnow
from weekly_mailer.config import Settings, load_settings
from weekly_mailer.errors import ConfigError
from weekly_mailer.proofs.links import check_link, check_links, links_of
from weekly_mailer.proofs.make import editor_row
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import SubscriberStatus
from weekly_mailer.subscribers.rules import request_subscription


def test_editors_are_a_toml_array_or_a_comma_separated_variable(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('editors = ["ann@example.org", "Bob <bob@example.net>"]\n'
                      'proof_hours = 1.5\napproval = "required"\n')  # fmt: skip
    settings = load_settings(config, environ={})
    assert settings.editors == ("ann@example.org", "Bob <bob@example.net>")
    assert (settings.proof_hours, settings.approval) == (1.5, "required")
    env = load_settings(environ={"WEEKLY_MAILER_EDITORS": " ann@example.org , cy@example.com,"})
    assert env.editors == ("ann@example.org", "cy@example.com")
    assert (env.proof_hours, env.approval) == (24.0, "none")  # the defaults
    assert load_settings(environ={}).editors == ()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEEKLY_MAILER_EDITORS": "ann@example.org, nobody"}, "editors: 'nobody' is not an"),
        ({"WEEKLY_MAILER_EDITORS": "a@x.org,A@x.org"}, "editors: 'A@x.org' is listed twice"),
        ({"WEEKLY_MAILER_APPROVAL": "maybe"}, "approval: 'maybe' is not one of none, veto"),
        ({"WEEKLY_MAILER_APPROVAL": "required"}, "approval: 'required' needs editors"),
        ({"WEEKLY_MAILER_EDITORS": "a@x.org", "WEEKLY_MAILER_APPROVAL": "veto",
          "WEEKLY_MAILER_PROOF_HOURS": "0"}, "approval: 'veto' needs editors and proof_hours"),
        ({"WEEKLY_MAILER_PROOF_HOURS": "200"}, "proof_hours"),
        ({"WEEKLY_MAILER_PROOF_HOURS": "-1"}, "proof_hours"),
    ],
)  # fmt: skip
def test_bad_proof_settings_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(environ=env)


def test_a_bad_editors_value_is_one_line_and_exit_2(workdir: Path) -> None:
    done = run_cli("doctor", cwd=workdir, env={"WEEKLY_MAILER_EDITORS": "ann@"})
    assert done.returncode == 2
    assert "editors: 'ann@' is not an e-mail address" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_link_check_says_what_is_wrong() -> None:
    with link_server() as (base, seen):
        assert check_link(f"{base}/ok") is None
        assert check_link(f"{base}/moved") is None  # 301 to /ok, followed
        assert check_link(f"{base}/no-head") is None  # HEAD 405, then GET 200
        gone = check_link(f"{base}/gone")
        assert gone is not None and gone.problem == "404 Not Found"
        assert ("GET", "/no-head") in seen
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = check_link(f"http://127.0.0.1:{port}/")
    assert refused is not None and refused.problem.startswith("cannot connect")
    # A server that takes the connection and never answers: the timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/slow"
        (slow,) = check_links([url], timeout=0.5)
        assert slow.problem == "timed out after 0.5s"


def test_an_unknown_host_is_listed() -> None:
    found = check_link("http://no-such-host.invalid/page", timeout=5)
    assert found is not None
    assert found.problem in ("unknown host", "timed out after 5s")


def test_links_of_leaves_out_placeholders_mailto_and_our_own_site() -> None:
    html = (
        '<a href="https://a.example/x">a</a> <a href="mailto:a@b.org">m</a>'
        '<a href="{{unsubscribe_url}}">u</a> <a href="https://news.example.org/archive/1">'
        'ar</a> <a href="https://a.example/x">again</a> <a href="http://b.example/">b</a>'
    )
    assert links_of(html, own="https://news.example.org") == [
        "https://a.example/x",
        "http://b.example/",
    ]


def test_preview_check_links_lists_the_broken_one_and_exits_1(workdir: Path) -> None:
    with link_server() as (base, _seen):
        article = write_article(workdir / "articles", base)
        env = {"WEEKLY_MAILER_SECRET_KEY": "s", "WEEKLY_MAILER_POSTAL_ADDRESS": "1 Road"}
        done = run_cli("preview", str(article), "--check-links", cwd=workdir, env=env)
        assert done.returncode == 1, done.stderr
        assert f"Links that do not work: 1 of 4\n  {base}/gone: 404 Not Found" in done.stdout
        assert (workdir / "preview.html").exists()
        article.write_text(
            f"---\ntitle: Fine\n---\nAll [good]({base}/ok).\n"
        )
        done = run_cli("preview", str(article), "--check-links", cwd=workdir, env=env)
        assert done.returncode == 0, done.stderr
        assert "Links: all 1 work." in done.stdout


def test_an_editor_who_is_no_reader_is_left_out_of_counts_until_added(
    database: Database, settings: Settings
) -> None:
    with database.sessions.begin() as session:
        subs.add(session, "ada@example.org", confirmed=True, source="test")
        editor = editor_row(session, "Ed <Ed@Example.org>", now=utcnow())
        assert editor.status == SubscriberStatus.EDITOR.value
        same = editor_row(session, "ada@example.org", now=utcnow())
        assert same.status == SubscriberStatus.ACTIVE.value  # a reader stays a reader
    with database.sessions.begin() as session:
        assert subs.count(session) == 1
        assert [s.email for s in subs.iter_subscribers(session)] == ["ada@example.org"]
        subs.add(session, "ed@example.org", confirmed=True, source="test")
    with database.sessions.begin() as session:
        assert subs.count(session, status="active") == 2
        # An import or the web form makes an editor's row a reader's, like a new address.
        editor_row(session, "fay@example.net", now=utcnow())
        editor_row(session, "gus@example.com", now=utcnow())
        report = subs.import_file(session, b"fay@example.net\n", filename="r.csv",
                                  confirmed=True)  # fmt: skip
        assert not report.errors
        asked = request_subscription(session, "gus@example.com", source="web")
        assert asked is not None and asked.status == SubscriberStatus.PENDING.value
    with database.sessions.begin() as session:
        assert subs.count(session, status="active") == 3
        assert subs.count(session, status="editor") == 0


def test_approve_without_a_proof_is_one_line(workdir: Path) -> None:
    env = {"WEEKLY_MAILER_DATABASE_URL": f"sqlite:///{workdir / 'm.db'}",
           "WEEKLY_MAILER_SECRET_KEY": "s"}  # fmt: skip
    assert run_cli("db", "upgrade", cwd=workdir, env=env).returncode == 0
    done = run_cli("issues", "approve", "--by", "Ann", cwd=workdir, env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: no proof is waiting for a decision")
    done = run_cli("issues", "veto", "2026-12-09", "--by", "Ann", cwd=workdir, env=env)
    assert done.returncode == 2 and "--reason" in done.stderr  # click: a missing option
    done = run_cli("issues", "veto", "2026-12-09", "--by", "Ann", "--reason", "no",
                   cwd=workdir, env=env)  # fmt: skip
    assert done.returncode == 1
    assert "Error: the week of 2026-12-09 has no proof yet: nothing to veto" in done.stderr


def test_the_daemon_runs_the_proof_job_at_start_and_every_minute(
    database: Database, settings: Settings, tmp_path: Path
) -> None:
    import datetime as dt

    from sqlalchemy import select

    from tests.proofs.support import WED, Clock
    from weekly_mailer.scheduler.daemon import Daemon
    from weekly_mailer.scheduler.job import WeeklyJob
    from weekly_mailer.scheduler.proof_job import ProofJob
    from weekly_mailer.store.models import Delivery, DeliveryKind

    with link_server() as (base, _seen):
        write_article(tmp_path / "articles", base)
        settings = settings.replace(
            article_source=str(tmp_path / "articles"), editors=("ed@example.org",)
        )
        clock = Clock(WED - dt.timedelta(hours=23))
        weekly = WeeklyJob(settings, database.sessions, clock=clock)
        proof_job = ProofJob(settings, database.sessions, clock=clock, link_timeout=5)
        daemon = Daemon(weekly, proofs=proof_job, reconcile_seconds=3600)
        assert daemon.scheduler.get_job("proofs") is not None
        try:
            daemon.start()
        finally:
            daemon.stop()
    with database.sessions.begin() as session:
        kinds = list(session.scalars(select(Delivery.kind)))
    assert kinds == [DeliveryKind.PROOF.value]  # the proof, queued; no issue copy
    plain = settings.replace(editors=())
    off = Daemon(
        WeeklyJob(plain, database.sessions, clock=clock),
        proofs=ProofJob(plain, database.sessions, clock=clock),
    )
    assert off.scheduler.get_job("proofs") is None


def test_a_week_given_up_takes_no_decision(database: Database) -> None:
    import datetime as dt

    from weekly_mailer.errors import ProofError
    from weekly_mailer.proofs import Decision, decide, week_approval
    from weekly_mailer.store.proof_models import Proof

    fire = dt.datetime(2026, 12, 10, 2, tzinfo=dt.UTC)
    week = dt.date(2026, 12, 9)
    with database.sessions.begin() as session:
        session.add(Proof(send_week=week, content_hash="a" * 64, fire_at=fire, subject="S",
                          title="T", source="s", source_key="k", summary={}))  # fmt: skip
    grace = dt.timedelta(hours=12)
    with database.sessions.begin() as session:
        done = decide(session, decision=Decision.APPROVE, by="  Ann   Editor ", now=fire,
                      grace=grace)  # fmt: skip
        assert (done.send_week, done.by, done.via) == (week, "Ann Editor", "cli")
        assert week_approval(session, week).state == "approved"
        with pytest.raises(ProofError, match="--reason"):
            decide(session, decision=Decision.VETO, by="Bob", now=fire, week=week, grace=grace)
        late = fire + grace + dt.timedelta(minutes=1)
        with pytest.raises(ProofError, match="was given up"):
            decide(session, decision=Decision.VETO, by="Bob", reason="x", now=late, week=week,
                   grace=grace)  # fmt: skip
        with pytest.raises(ProofError, match="no proof is waiting"):
            decide(session, decision=Decision.APPROVE, by="Bob", now=late, grace=grace)
