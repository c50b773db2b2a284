"""`bounces ingest` on an mbox file, with --dry-run, and its --help (real CLI subprocesses)."""

from __future__ import annotations

import email
from pathlib import Path

from sqlalchemy import select

from tests.conftest import ROOT, run_cli
from weekly_mailer.config import load_settings
from weekly_mailer.store.bounce_models import BounceEvent
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Subscriber

CORPUS = ROOT / "tests" / "data" / "bounces"
FILES = [
    "postfix_dsn_user_unknown.eml",  # hard: ann.lee@mail.example.net
    "postfix_dsn_spamhaus.eml",  # block: bea@corp.example
    "vacation_rfc3834.eml",  # auto-reply from zed@holiday.example
    "arf_abuse_with_rcpt.eml",  # complaint: sue@isp.example
]
PEOPLE = ["ann.lee@mail.example.net", "bea@corp.example", "zed@holiday.example", "sue@isp.example"]
# Hand-written reports that quote none of our Message-IDs: believed as before trust (`any`).
ENV = {"WEEKLY_MAILER_BOUNCE_LIMIT": "2", "WEEKLY_MAILER_BOUNCE_TRUST": "any"}


def _mbox(path: Path) -> None:
    with path.open("wb") as out:
        for name in FILES:
            data = (CORPUS / name).read_bytes().replace(b"\r\n", b"\n")
            out.write(b"From MAILER-DAEMON Wed Nov 25 08:00:07 2026\n" + data.rstrip(b"\n"))
            out.write(b"\n\n")


def _message_id(name: str) -> str:
    return str(email.message_from_bytes((CORPUS / name).read_bytes())["Message-ID"])


def _state(workdir: Path) -> tuple[dict[str, tuple[str, int]], list[tuple[str, str, str]]]:
    with Database(load_settings(environ=ENV)) as db, db.sessions.begin() as s:
        subs = {x.email: (x.status, x.bounce_count) for x in s.scalars(select(Subscriber))}
        rows = [
            (e.kind, e.recipient, e.domain)
            for e in s.scalars(select(BounceEvent).order_by(BounceEvent.id))
        ]
    return subs, rows


def _setup(workdir: Path) -> None:
    assert run_cli("init", cwd=workdir, env=ENV).returncode == 0
    (workdir / "people.csv").write_text("email\n" + "\n".join(PEOPLE) + "\n")
    r = run_cli("subscribers", "import", "people.csv", "--confirmed", cwd=workdir, env=ENV)
    assert r.returncode == 0, r.stderr
    _mbox(workdir / "bounces.mbox")


def test_dry_run_on_an_mbox_prints_each_message_and_changes_nothing(workdir: Path) -> None:
    _setup(workdir)
    r = run_cli("bounces", "ingest", "bounces.mbox", "--dry-run", cwd=workdir, env=ENV)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"1 {_message_id(FILES[0])}: hard ann.lee@mail.example.net 5.1.1 (550): 550 5.1.1 "
        "<ann.lee@mail.example.net>: Recipient address rejected: User unknown in virtual "
        "mailbox table",
        f"2 {_message_id(FILES[1])}: block bea@corp.example 5.7.1 (554): 554 5.7.1 Service "
        "unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org; "
        "https://www.spamhaus.example/query/ip/192.0.2.10",
        f"3 {_message_id(FILES[2])}: auto-reply",
        f"4 {_message_id(FILES[3])}: complaint sue@isp.example -: feedback report: abuse "
        "fbl.isp.example-FBL/1.0",
        "Dry run, nothing changed. 4 messages: 1 hard bounce (0 subscribers now bounced), "
        "0 temporary failures ignored, 1 complaint, 0 unsubscribe requests, "
        "0 unknown recipients, 1 not reports.",
        "By kind: 1 hard, 0 soft, 1 block, 0 expired, 0 unknown, 1 complaint, 0 opt-out, "
        "0 feedback; 1 auto-replies, 0 already seen.",
    ]
    subs, rows = _state(workdir)
    assert subs == {p: ("active", 0) for p in PEOPLE}
    assert rows == []


def test_ingest_an_mbox_applies_once(workdir: Path) -> None:
    _setup(workdir)
    before = (workdir / "bounces.mbox").read_bytes()
    r = run_cli("bounces", "ingest", "bounces.mbox", cwd=workdir, env=ENV)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("4 messages: 1 hard bounce (0 subscribers now bounced)")
    subs, rows = _state(workdir)
    assert subs == {
        "ann.lee@mail.example.net": ("active", 1),
        "bea@corp.example": ("active", 0),  # a block is never the reader's fault
        "zed@holiday.example": ("active", 0),
        "sue@isp.example": ("complained", 0),
    }
    assert rows == [
        ("hard", "ann.lee@mail.example.net", "mail.example.net"),
        ("block", "bea@corp.example", "corp.example"),
        ("complaint", "sue@isp.example", "isp.example"),
    ]
    assert (workdir / "bounces.mbox").read_bytes() == before  # an mbox is read, not changed

    again = run_cli("bounces", "ingest", "bounces.mbox", cwd=workdir, env=ENV)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1].endswith("1 auto-replies, 3 already seen.")
    assert _state(workdir) == (subs, rows)  # nothing counted twice


def test_help_names_the_inputs_and_the_kinds(workdir: Path) -> None:
    r = run_cli("bounces", "ingest", "--help", cwd=workdir)
    assert r.returncode == 0
    for words in ("mbox", "maildir", "stdin", "--dry-run", "hard", "block", "expired", "opt-out"):
        assert words in r.stdout, words
