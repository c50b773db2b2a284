"""The classifier on real mail: sisimai's public set of 591 reports (../shared/corpora/sisimai,
labels.tsv says what each file is), every file ingested through ``parse_report`` and
``apply_report`` on a real SQLite database holding a subscriber for every address the corpus
names, with ``bounce_limit = 1``.

The corpus reuses Message-IDs across files (real reports do not), so each file is applied in its
own transaction, rolled back afterwards: every file meets the database as it was, and the
product's "already seen" dedup is left as it is for real mail.

What must hold over the whole corpus (issue #20): hard bounces bounced >= 92%, other failures
(``soft``) bounced <= 3%, abuse reports complained >= 12 of 13, no complaint from anything else,
opt-out reports unsubscribe, auto-replies and plain mail (``quiet``) change nothing. Reached:
hard 169 of 183 (92.3%), soft 8 of 380 (2.1%), abuse 12 of 13 (arf-15, a feedback loop's report
whose returned message is to "undisclosed", names nobody: only our VERP Return-Path or
Message-ID can tie it, as a test below shows); the figures reached are held as a floor. The
figures and the misses are printed (``pytest -s``) for the closing note.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, or_, select

from tests.conftest import ROOT
from weekly_mailer.bounces.intake import IngestSummary, apply_report, parse_report
from weekly_mailer.config import Settings
from weekly_mailer.store.bounce_models import BounceKind
from weekly_mailer.store.db import Database, make_engine, upgrade
from weekly_mailer.store.models import Subscriber, SubscriberStatus

CORPUS = ROOT.parent / "shared" / "corpora" / "sisimai"
NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
_EMAIL = re.compile(rb"[\w.+=-]+@[\w-]+(?:\.[\w-]+)+")


@dataclasses.dataclass(frozen=True)
class Outcome:
    name: str
    label: str
    read_as: str  # what the reader made of it: "bounce: hard x@y", "not a report"…
    changed: frozenset[str]  # the subscriber statuses it caused: "bounced", "complained"…
    unnamed_complaint: bool = False  # a complaint naming nobody: its reader's once tied (VERP)


@pytest.fixture(scope="module")
def corpus() -> Path:
    if not (CORPUS / "labels.tsv").exists():
        reason = f"the sisimai corpus is not beside the checkout ({CORPUS})"
        if os.environ.get("WEEKLY_MAILER_TEST_REQUIRE_SEED") == "1":
            pytest.fail(f"the sisimai corpus is required here: {reason}")
        pytest.skip(reason)
    return CORPUS


def _labels(corpus: Path) -> dict[str, str]:
    with (corpus / "labels.tsv").open(newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    return {row[0]: row[1] for row in rows[1:]}


def _describe(data: bytes) -> str:
    report = parse_report(data)
    found = "; ".join(f"{f.kind.value} {f.recipient} {f.status} {f.reason[:90]}" for f in
                      report.findings)  # fmt: skip
    return f"{report.kind}: {found or 'no finding'}"


def _ingest(database: Database, corpus: Path, labels: dict[str, str]) -> Iterator[Outcome]:
    files = {name: (corpus / "maildir" / name).read_bytes() for name in labels}
    # A subscriber for every address the corpus names (and for every recipient as the reader
    # spells it: quoted or encoded local parts): what a report then changes is the verdict.
    addresses = {a.decode().lower() for d in files.values() for a in _EMAIL.findall(d)}
    addresses |= {f.recipient for d in files.values() for f in parse_report(d).findings}
    addresses |= {a for d in files.values() for a in parse_report(d).unsubscribed}
    addresses.discard("")
    with database.sessions.begin() as session:
        session.execute(
            insert(Subscriber),
            [
                {"email": a, "email_key": a, "status": SubscriberStatus.ACTIVE.value}
                for a in sorted(addresses)
            ],
        )
    for name, data in files.items():
        with database.sessions() as session:
            apply_report(  # bounce_trust = "any": it is other people's mail, not ours
                session,
                parse_report(data),
                bounce_limit=1,
                summary=IngestSummary(),
                now=NOW,
                trust="any",
            )
            session.flush()
            changed = session.scalars(
                select(Subscriber.status).where(
                    or_(
                        Subscriber.status != SubscriberStatus.ACTIVE.value,
                        Subscriber.bounce_count > 0,
                    )  # fmt: skip
                )
            )
            statuses = frozenset(str(s) for s in changed)
            session.rollback()  # the next file meets the database as it was
        unnamed = any(
            f.kind is BounceKind.COMPLAINT and not f.recipient for f in parse_report(data).findings
        )
        yield Outcome(name, labels[name], _describe(data), statuses, unnamed)


@dataclasses.dataclass(frozen=True)
class Figures:
    hard: float  # hard bounces that bounced their reader
    soft_hard: float  # other failures that bounced their reader
    abuse: int  # abuse reports that made their reader "complained" (of 13)
    abuse_missed: list[Outcome]
    wrong_complaints: list[Outcome]
    optout_missed: list[Outcome]
    quiet_changed: list[Outcome]  # auto-replies, plain mail, other feedback that changed anyone


@pytest.fixture(scope="module")
def figures(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Figures:
    url = f"sqlite:///{tmp_path_factory.mktemp('sisimai') / 'test.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    labels = _labels(corpus)
    assert len(labels) == 591
    with Database(Settings(database_url=url)) as database:
        outcomes = list(_ingest(database, corpus, labels))
    by_label: dict[str, list[Outcome]] = collections.defaultdict(list)
    for o in outcomes:
        by_label[o.label].append(o)

    def count(label: str, status: str) -> int:
        return sum(status in o.changed for o in by_label[label])

    n_hard, n_soft = len(by_label["hard"]), len(by_label["soft"])
    hard, soft_hard = count("hard", "bounced"), count("soft", "bounced")
    abuse, optout = count("abuse", "complained"), count("optout", "unsubscribed")
    wrong_complaints = [o for o in outcomes if o.label != "abuse" and "complained" in o.changed]
    quiet = by_label["quiet"] + by_label["feedback-other"]
    quiet_changed = [o for o in quiet if o.changed]
    print(f"\nsisimai corpus, {len(outcomes)} files:")
    print(f"  hard bounces bounced:        {hard}/{n_hard} = {hard / n_hard:.1%}")
    print(f"  soft failures bounced:       {soft_hard}/{n_soft} = {soft_hard / n_soft:.1%}")
    print(f"  abuse reports complained:    {abuse}/{len(by_label['abuse'])}")
    print(f"  opt-out reports unsubscribe: {optout}/{len(by_label['optout'])}")
    print(f"  complaints from non-abuse:   {len(wrong_complaints)}")
    print(f"  quiet and other feedback that changed something: {len(quiet_changed)}/{len(quiet)}")
    misses = (
        [o for o in by_label["hard"] if "bounced" not in o.changed]
        + [o for o in by_label["soft"] if "bounced" in o.changed]
        + [o for o in by_label["abuse"] if "complained" not in o.changed]
        + [o for o in by_label["optout"] if "unsubscribed" not in o.changed]
        + wrong_complaints
        + quiet_changed
    )
    for o in misses:
        changed = sorted(o.changed) or "nothing"
        print(f"  miss {o.name} ({o.label}, changed: {changed}): {o.read_as}")
    return Figures(
        hard=hard / n_hard,
        soft_hard=soft_hard / n_soft,
        abuse=abuse,
        abuse_missed=[o for o in by_label["abuse"] if "complained" not in o.changed],
        wrong_complaints=wrong_complaints,
        optout_missed=[o for o in by_label["optout"] if "unsubscribed" not in o.changed],
        quiet_changed=quiet_changed,
    )


def test_what_must_never_happen_does_not(figures: Figures) -> None:
    """No complaint from anything but an abuse report; opt-outs unsubscribe; auto-replies,
    plain mail and other feedback change nobody."""
    assert figures.wrong_complaints == []
    assert figures.optout_missed == []
    assert figures.quiet_changed == []


def test_the_classifier_holds_what_it_reached(figures: Figures) -> None:
    """Floors at the figures measured at this commit, against regressions: hard bounces 169 of
    183 (92.3%), soft marked hard 8 of 380 (2.1%), abuse 12 of 13, the one other read as a
    complaint that names nobody (a redacted report: its reader's once its VERP Return-Path or
    our Message-ID ties it, tests/bounces/test_trust)."""
    assert figures.hard >= 169 / 183
    assert figures.soft_hard <= 8 / 380
    assert figures.abuse >= 12
    assert all(o.unnamed_complaint for o in figures.abuse_missed), figures.abuse_missed


def test_hard_bounces_recognised_at_least_92_percent(figures: Figures) -> None:
    assert figures.hard >= 0.92


def test_soft_failures_marked_hard_at_most_3_percent(figures: Figures) -> None:
    """ "No such user" words with no status beyond 5.0.0 are a missing mailbox only when the
    report shows the refusal answered RCPT TO (docs/bounces.md); the 8 left are labels that can
    be argued (a Postfix "Recipient address rejected: User unknown in local recipient table",
    a pipelined RCPT answer, Amazon SES's inbound "5.1.1 Mailbox does not exist"...)."""
    assert figures.soft_hard <= 0.03


def test_abuse_reports_complained_12_of_13(figures: Figures) -> None:
    """Eleven name their complainant (Original-Rcpt-To, Removal-Recipient, the returned
    message's To); arf-11 is a reader's own "FW:" of a message they got as "Undisclosed
    Recipients", so its sender is the complainant (report_parts.forwarded_by). arf-15 names
    nobody (a feedback loop, the copy to "undisclosed"): sisimai gives it a pseudo recipient,
    which is nobody's subscription, so none is invented here."""
    assert figures.abuse >= 12
    assert [o.name for o in figures.abuse_missed] == ["bsd/arf-15.eml"]


@pytest.mark.parametrize(
    ("name", "tie"),
    [
        # arf-11 quotes a Message-ID without angle brackets and has no Return-Path;
        # arf-15 quotes a Return-Path and a foreign Message-ID.
        ("bsd/arf-11.eml", "message-id"),
        ("bsd/arf-15.eml", "return-path"),
    ],
)
def test_the_two_redacted_abuse_reports_complain_our_reader_once_they_quote_our_copy(
    corpus: Path, settings: Settings, name: str, tie: str
) -> None:
    """The two abuse reports that name nobody, as they would come back about a copy of ours:
    the same real report, its returned message carrying our signed Message-ID (arf-11, in its
    own bracketless spelling) or our VERP Return-Path (arf-15). With bounce_trust = "signed"
    (the default) each complains exactly the reader it is tied to, and counts in that issue's
    complaint rate."""
    from tests.issues.test_health import LAST_WEEK, sent_issue
    from weekly_mailer import issues
    from weekly_mailer.bounces.intake import verp_reader
    from weekly_mailer.compose import make_message_id
    from weekly_mailer.store.models import Delivery

    settings = settings.replace(bounce_address="bounces@example.org", verp=True)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    data = (corpus / "maildir" / name).read_bytes()
    with Database(settings) as database, database.sessions.begin() as session:
        issue_id, rows = sent_issue(session, delivered=3)
        subs = [session.get(Subscriber, session.get(Delivery, r).subscriber_id) for r in rows]
        assert all(s is not None for s in subs)
        if tie == "message-id":
            ours = make_message_id(settings, LAST_WEEK, subs[1].id).strip("<>")  # type: ignore[union-attr]
            old = b"Message-ID: ffffffffffffffffffffffffff0000000000@example.net"
            assert data.count(old) == 1
            data = data.replace(old, b"Message-ID: " + ours.encode())
        else:
            codec = verp_reader(settings)
            assert codec is not None
            old = b"Return-Path: <kijitora@example.net>"
            assert data.count(old) == 1
            data = data.replace(old, f"Return-Path: <{codec.address(rows[1])}>".encode())
        summary = IngestSummary()
        apply_report(
            session, parse_report(data), bounce_limit=1, summary=summary, now=NOW,
            secret_key=settings.secret_key, verp=verp_reader(settings),
        )  # fmt: skip
        assert [s.status for s in subs] == ["active", "complained", "active"]  # type: ignore[union-attr]
        assert summary.complaints == 1
        assert issues.issue_health(session, issue_id).complaints == 1
