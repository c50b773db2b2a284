"""The editors' week, end to end: the daemon's proof job and weekly job with an injected clock,
a real SMTP server (aiosmtpd), a local HTTP server for the issue's links, the CLI as a
subprocess and the web app's proof links.

- the proof reaches each editor ``proof_hours`` before the send (not earlier), with ``[Proof]``
  in the subject and the summary: the article and its source, the readers, a lint warning, the
  one broken link (404; a link refusing HEAD is tried with GET and works), the size, the time;
- ``approval = required``: nothing is sent until ``issues approve``; approved before the send
  time it goes at the send time, approved after it (within grace) at once;
- the proof's approve link: a GET shows a button and changes nothing, the POST approves; a
  tampered token gets the plain invalid-link page;
- the article edited after its approval: a new proof, no send until approved again;
- ``approval = veto`` with a veto: nothing is sent, the week is missed with who and why, and
  ``issues list`` says who vetoed and why.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import run_cli
from tests.proofs.support import (
    WED,
    WEEK,
    Clock,
    add_readers,
    deliver,
    link_server,
    parsed,
    summary_of,
    write_article,
    write_config,
)
from tests.support.smtpd import SMTPServer
from weekly_mailer import subscribers as subs
from weekly_mailer.config import Settings
from weekly_mailer.issues.ledger import record_week
from weekly_mailer.scheduler.catchup import StartAction
from weekly_mailer.scheduler.job import WeeklyJob
from weekly_mailer.scheduler.proof_job import ProofJob
from weekly_mailer.store.db import Database, make_engine, upgrade
from weekly_mailer.store.models import Issue, IssueStatus
from weekly_mailer.subscribers.reader import pause
from weekly_mailer.web import close_app, create_app

pytestmark = pytest.mark.slow

EDITORS = ("ed@example.org", "Fay Proof <fay@example.net>")
READERS = ("ada@example.org", "bo@example.net")
LINK = re.compile(r"https://news\.example\.org(/proof/[A-Za-z0-9_.\-]+)")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backing(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The settings on SQLite, then on a fresh PostgreSQL database."""
    if request.param == "postgresql":
        return settings.replace(database_url=request.getfixturevalue("pg_url"))
    return settings


@pytest.fixture
def database(backing: Settings) -> Iterator[Database]:
    engine = make_engine(backing.database_url)
    upgrade(engine)
    engine.dispose()
    db = Database(backing)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server


@pytest.fixture
def links() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    with link_server() as served:
        yield served


def week_settings(
    settings: Settings, tmp_path: Path, smtp: SMTPServer, base: str, *, approval: str
) -> Settings:
    write_article(tmp_path / "articles", base)
    return settings.replace(
        backend_url=smtp.url,
        article_source=str(tmp_path / "articles"),
        editors=EDITORS,
        proof_hours=24.0,
        approval=approval,
        postal_address="",  # a lint warning: anti-spam laws want one
        preflight="off",  # no DNS questions about example.org
    )


def installed_before(database: Database) -> None:
    """An installation that ran last week (so a late week is caught up, or recorded missed)."""
    with database.sessions.begin() as session:
        record_week(session, WEEK - dt.timedelta(days=7), status=IssueStatus.SKIPPED,
                    reason="earlier", now=WED - dt.timedelta(days=7))  # fmt: skip


def jobs(database: Database, settings: Settings, clock: Clock) -> tuple[ProofJob, WeeklyJob]:
    return (
        ProofJob(settings, database.sessions, clock=clock, link_timeout=5.0),
        WeeklyJob(settings, database.sessions, clock=clock),
    )


def proofs_to(smtp: SMTPServer, editor: str) -> list[bytes]:
    return [m.data for m in smtp.to(editor) if "[Proof]" in str(m.message["Subject"])]


def issue_copies(smtp: SMTPServer) -> list[str]:
    readers = (*READERS, "cy@example.com")
    return sorted(a for m in smtp.received() for a in m.rcpt_tos if a in readers)


def week_issue(database: Database) -> Issue | None:
    with database.sessions.begin() as session:
        return session.scalars(
            select(Issue).where(Issue.send_week == WEEK)
        ).one_or_none()


PERSONAL = re.compile(
    r"https://news\.example\.org/(unsubscribe|manage)/[A-Za-z0-9_.\-]+|[a-z]+@example\.(org|net)"
)


def impersonal(text: str) -> str:
    return PERSONAL.sub("<personal>", text)


def cli(config: Path, tmp_path: Path, *args: str) -> tuple[int, str]:
    done = run_cli(*args, cwd=tmp_path, env={"WEEKLY_MAILER_CONFIG": str(config)})
    return done.returncode, done.stdout + done.stderr


def test_required_approval_proof_summary_and_the_cli_approval(
    database: Database, backing: Settings, tmp_path: Path, smtp: SMTPServer,
    links: tuple[str, list[tuple[str, str]]],
) -> None:  # fmt: skip
    base, seen = links
    settings = week_settings(backing, tmp_path, smtp, base, approval="required")
    config = write_config(settings, tmp_path / "weekly_mailer.toml")
    add_readers(database, *READERS, "cy@example.com")
    with database.sessions.begin() as session:  # cy paused this issue: not among the readers
        (cy,) = [s for s in subs.iter_subscribers(session) if s.email == "cy@example.com"]
        pause(session, cy, issues=1, source="test", now=WED - dt.timedelta(days=2))
    installed_before(database)
    clock = Clock(WED - dt.timedelta(hours=30))
    proof_job, weekly = jobs(database, settings, clock)

    assert proof_job.run() is None  # 30 h before the send: too early for a 24 h proof
    clock.now = WED - dt.timedelta(hours=24, minutes=1)
    assert proof_job.run() is None
    clock.now = WED - dt.timedelta(hours=24)
    proof = proof_job.run()
    assert proof is not None
    clock.now += dt.timedelta(minutes=11)
    assert proof_job.run() is None  # composed again: the same content, no second proof
    deliver(database, settings, clock)

    for editor in ("ed@example.org", "fay@example.net"):
        (data,) = proofs_to(smtp, editor)
        message = parsed(data)
        assert message["Subject"] == "[Proof] Hedges in winter"
        assert message["To"] == editor
        summary = summary_of(data)
        assert "Article: Hedges in winter" in summary
        assert f"Source: {tmp_path / 'articles' / f'{WEEK}-hedges.md'}" in summary
        assert "Readers: 2 will get it (1 more paused)" in summary
        utc = WED.astimezone(dt.UTC)
        goes = f"Goes out: Wed {WEEK} 18:00 {WED.tzname()} (Thu {utc:%Y-%m-%d %H:%M} UTC)"
        assert goes in summary
        assert "postal_address is not set" in summary
        assert f"Links that do not work: 1 of 4\n  - {base}/gone: 404 Not Found" in summary
        assert "/no-head" not in summary and "/moved" not in summary
        assert re.search(r"Size: the HTML is \d+\.\d KB \(Gmail clips past 102 KB\)", summary)
        assert "REQUIRED" in summary
        # The issue itself follows the summary, as readers get it.
        html = message.get_body(preferencelist=("html",))
        assert html is not None and "A hedge is a slow city" in html.get_content()
    assert ("GET", "/no-head") in seen and ("HEAD", "/no-head") in seen
    assert issue_copies(smtp) == []  # a proof is no send

    # At the send time, not approved: nothing goes, nothing is recorded; the week waits.
    clock.now = WED + dt.timedelta(seconds=1)
    assert weekly.reconcile() is StartAction.NOTHING
    deliver(database, settings, clock)
    assert week_issue(database) is None and issue_copies(smtp) == []
    code, out = cli(config, tmp_path, "issues", "list")
    assert code == 0, out
    assert f"PROOF week of {WEEK}: proof #1" in out and "waiting for approval" in out

    # Approved from the CLI (a real subprocess), after the send time: it goes at once.
    code, out = cli(config, tmp_path, "issues", "approve", "--by", "Ann Editor")
    assert code == 0, out
    assert f"Approved the week of {WEEK} (proof #1) by Ann Editor" in out
    clock.now = WED + dt.timedelta(hours=2)
    assert weekly.reconcile() is StartAction.CATCH_UP
    deliver(database, settings, clock)
    assert issue_copies(smtp) == sorted(READERS)
    reader_copy = parsed(smtp.to("ada@example.org")[0].data)
    assert reader_copy["Subject"] == "Hedges in winter"
    # The proof showed these very bytes: its issue part and the reader's copy differ only in
    # the personal fields (the address, the signed unsubscribe and manage links).
    summary_part, proofed = parsed(proofs_to(smtp, "ed@example.org")[0]).iter_parts()
    assert proofed.get_content_type() == "multipart/alternative"
    for kind in ("html", "plain"):
        ours, theirs = (m.get_body(preferencelist=(kind,)) for m in (proofed, reader_copy))
        assert ours is not None and theirs is not None
        assert impersonal(ours.get_content()) == impersonal(theirs.get_content())
    code, out = cli(config, tmp_path, "issues", "list")
    assert re.search(r"; sent; approved by Ann Editor at \d{4}-\d\d-\d\d \d\d:\d\d UTC", out), out
    code, out = cli(config, tmp_path, "issues", "approve", "--by", "Ann Editor")
    assert code != 0 and "Error: no proof is waiting" in out, out


def test_the_proof_link_approves_on_post_only_and_an_edit_voids_it(
    database: Database, backing: Settings, tmp_path: Path, smtp: SMTPServer,
    links: tuple[str, list[tuple[str, str]]],
) -> None:  # fmt: skip
    base, _seen = links
    settings = week_settings(backing, tmp_path, smtp, base, approval="required")
    config = write_config(settings, tmp_path / "weekly_mailer.toml")
    add_readers(database, *READERS)
    installed_before(database)
    clock = Clock(WED - dt.timedelta(hours=20))
    proof_job, weekly = jobs(database, settings, clock)
    assert proof_job.run() is not None  # past the proof time already: at once
    deliver(database, settings, clock)
    (data,) = proofs_to(smtp, "ed@example.org")
    found = LINK.findall(summary_of(data))
    assert len(found) == 2
    approve_path, veto_path = found

    app = create_app(settings, db=database, deliver=False)
    try:
        client = app.test_client()
        page = client.get(approve_path)
        assert page.status_code == 200
        assert b'id="approve"' in page.data and b"method=\"post\"" in page.data
        tampered = approve_path[:-3] + ("AAA" if not approve_path.endswith("AAA") else "BBB")
        bad = client.post(tampered)
        assert bad.status_code == 400 and b"This link is not valid" in bad.data
        # GETs alone changed nothing: at the send time the week waits.
        clock.now = WED
        assert weekly.reconcile() is StartAction.NOTHING
        assert week_issue(database) is None
        clock.now = WED - dt.timedelta(hours=1)
        done = client.post(approve_path)
        assert done.status_code == 200 and b"Approved" in done.data
        code, out = cli(config, tmp_path, "issues", "list")
        assert "approved by ed@example.org" in out, out

        # The article is edited after the approval: a new proof, the approval void.
        write_article(tmp_path / "articles", base, extra="\nA late correction.\n")
        second = proof_job.run()
        assert second is not None and second.id == 2
        deliver(database, settings, clock)
        assert len(proofs_to(smtp, "ed@example.org")) == 2
        newest = proofs_to(smtp, "fay@example.net")[-1]
        assert "This proof replaces an earlier one" in summary_of(newest)
        clock.now = WED + dt.timedelta(seconds=1)
        assert weekly.reconcile() is StartAction.NOTHING
        deliver(database, settings, clock)
        assert issue_copies(smtp) == []
        code, out = cli(config, tmp_path, "issues", "list")
        assert "the approval by ed@example.org was for content that changed since" in out, out
        # The old proof's link is out of date: its POST changes nothing.
        stale = client.post(approve_path)
        assert stale.status_code == 409 and b"out of date" in stale.data
        # The new proof's link approves the new content: it goes at once (within grace).
        (fresh,) = [p for p in LINK.findall(summary_of(newest))][:1]
        assert client.post(fresh).status_code == 200
        clock.now = WED + dt.timedelta(minutes=5)
        assert weekly.reconcile() is StartAction.CATCH_UP
        deliver(database, settings, clock)
        assert issue_copies(smtp) == sorted(READERS)
        body = parsed(smtp.to("bo@example.net")[0].data).get_body(preferencelist=("plain",))
        assert body is not None and "A late correction." in body.get_content()
        # Sent: the links no longer do anything.
        assert client.get(veto_path).status_code == 410
    finally:
        close_app(app)


def test_a_veto_sends_nothing_and_issues_list_says_who_and_why(
    database: Database, backing: Settings, tmp_path: Path, smtp: SMTPServer,
    links: tuple[str, list[tuple[str, str]]],
) -> None:  # fmt: skip
    base, _seen = links
    settings = week_settings(backing, tmp_path, smtp, base, approval="veto")
    config = write_config(settings, tmp_path / "weekly_mailer.toml")
    add_readers(database, *READERS)
    installed_before(database)
    clock = Clock(WED - dt.timedelta(hours=23))
    proof_job, weekly = jobs(database, settings, clock)
    assert proof_job.run() is not None
    code, out = cli(
        config, tmp_path, "issues", "veto", str(WEEK), "--by", "Bob", "--reason",
        "the survey link is dead",
    )  # fmt: skip
    assert code == 0 and f"Vetoed the week of {WEEK} by Bob" in out, out
    clock.now = WED + dt.timedelta(seconds=1)
    assert weekly.reconcile() is StartAction.NOTHING
    clock.now = WED + dt.timedelta(hours=12, minutes=1)  # past grace_hours
    assert weekly.reconcile() is StartAction.MISSED
    deliver(database, settings, clock)
    assert issue_copies(smtp) == []
    issue = week_issue(database)
    assert issue is not None and issue.status == "missed"
    assert "vetoed by Bob" in issue.reason and "the survey link is dead" in issue.reason
    code, out = cli(config, tmp_path, "issues", "list")
    assert code == 0
    vetoed = r"; missed; vetoed by Bob at \d{4}-\d\d-\d\d \d\d:\d\d UTC: the survey link is dead"
    assert re.search(vetoed, out), out
