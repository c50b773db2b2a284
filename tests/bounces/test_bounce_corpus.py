"""The corpus (tests/data/bounces): every message read as expected, and `bounces ingest` on all of
them with bounce_limit = 1 bounces the hard bounces and nobody else."""

from __future__ import annotations

import collections
import email
import json
import mailbox
from email.utils import parseaddr
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import ROOT, run_cli
from weekly_mailer.bounces.intake import parse_report
from weekly_mailer.config import load_settings
from weekly_mailer.store.bounce_models import BounceEvent
from weekly_mailer.store.db import Database
from weekly_mailer.store.models import Subscriber

CORPUS = ROOT / "tests" / "data" / "bounces"
EXPECTED: dict[str, dict[str, str | None]] = json.loads((CORPUS / "expected.json").read_text())
NOTHING = {"auto-reply", "other"}  # messages that must change nothing


def test_the_corpus_is_big_and_varied() -> None:
    kinds = collections.Counter(str(e["kind"]) for e in EXPECTED.values())
    assert len(EXPECTED) >= 40
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(EXPECTED)
    for kind in ("hard", "soft", "block", "expired", "complaint", "opt-out", "feedback"):
        assert kinds[kind] >= 1, kind
    assert kinds["hard"] >= 15 and kinds["block"] >= 8 and kinds["auto-reply"] >= 4


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_message_reads_as_expected(name: str) -> None:
    report = parse_report((CORPUS / name).read_bytes())
    want = EXPECTED[name]
    if want["recipient"] is None:
        assert report.findings == []
        assert report.kind == ("auto-reply" if want["kind"] == "auto-reply" else "other")
    else:
        got = [(f.kind.value, f.recipient) for f in report.findings]
        assert got == [(want["kind"], want["recipient"])], report.findings


def _sender(name: str) -> str:
    msg = email.message_from_bytes((CORPUS / name).read_bytes())
    return parseaddr(str(msg["From"]))[1].lower()


def test_ingest_the_corpus_bounces_only_the_hard_bounces(workdir: Path) -> None:
    # Reports written by hand: none came to a VERP address or quotes a Message-ID of ours.
    env = {"WEEKLY_MAILER_BOUNCE_LIMIT": "1", "WEEKLY_MAILER_BOUNCE_TRUST": "any"}
    assert run_cli("init", cwd=workdir, env=env).returncode == 0
    people = {str(e["recipient"] or _sender(name)): name for name, e in sorted(EXPECTED.items())}
    (workdir / "people.csv").write_text("email\n" + "\n".join(people) + "\n")
    r = run_cli("subscribers", "import", "people.csv", "--confirmed", cwd=workdir, env=env)
    assert r.returncode == 0, r.stderr
    box = mailbox.Maildir(str(workdir / "reports"), create=True)
    for name in sorted(EXPECTED):
        box.add((CORPUS / name).read_bytes())

    r = run_cli("bounces", "ingest", "reports", cwd=workdir, env=env)
    assert r.returncode == 0, r.stderr
    print(r.stdout)

    with Database(load_settings(environ=env)) as db, db.sessions.begin() as s:
        status = {x.email: (x.status, x.bounce_count) for x in s.scalars(select(Subscriber))}
        events = collections.defaultdict(list)
        for ev in s.scalars(select(BounceEvent)):
            events[ev.recipient].append(ev.kind)
            if ev.recipient in people:
                assert ev.subscriber_id is not None
            assert ev.domain == ev.recipient.rpartition("@")[2]
    expected_status = {"hard": "bounced", "complaint": "complained", "opt-out": "unsubscribed"}
    confusion: collections.Counter[tuple[str, str]] = collections.Counter()
    for address, name in people.items():
        want = str(EXPECTED[name]["kind"])
        got = events.get(address, ["(none)" if want in NOTHING else "(missed)"])
        confusion[(want, got[0])] += 1
        assert len(got) == 1, (name, got)  # one report, one row
        if want not in ("hard",) and want not in expected_status:
            # block, soft, expired, feedback, auto-replies, non-reports: nobody is touched
            assert status[address] == ("active", 0), (name, status[address])
        elif want != "hard":
            assert status[address][0] == expected_status[want], name
    hard = [a for a, n in people.items() if EXPECTED[n]["kind"] == "hard"]
    bounced = [a for a in hard if status[a] == ("bounced", 1)]
    print("expected -> recorded: count")
    for (want, got), count in sorted(confusion.items()):
        print(f"  {want:>10} -> {got:<10} {count}")
    print(f"hard bounces recognised: {len(bounced)}/{len(hard)}")
    assert len(bounced) >= 0.95 * len(hard)
    assert sum(1 for a, st in status.items() if st[0] == "bounced") == len(bounced)
    kinds = collections.Counter(str(e["kind"]) for e in EXPECTED.values())
    assert r.stdout.splitlines()[1] == (
        f"By kind: {kinds['hard']} hard, {kinds['soft']} soft, {kinds['block']} block, "
        f"{kinds['expired']} expired, 0 unknown, {kinds['complaint']} complaint, "
        f"{kinds['opt-out']} opt-out, {kinds['feedback']} feedback; "
        f"{kinds['auto-reply']} auto-replies, 0 already seen."
    )
