"""The classifier on real mail: sisimai's public set of 591 reports (../shared/corpora/sisimai,
labels.tsv says what each file is), every file ingested through ``parse_report`` and
``apply_report`` on a real SQLite database holding a subscriber for every address the corpus
names, with ``bounce_limit = 1``.

The corpus reuses Message-IDs across files (real reports do not), so each file is applied in its
own transaction, rolled back afterwards: every file meets the database as it was, and the
product's "already seen" dedup is left as it is for real mail.

What must hold over the whole corpus: hard bounces bounced >= 92%, other failures (``soft``)
bounced <= 3%, abuse reports complained >= 12 of 13, no complaint from anything else, opt-out
reports unsubscribe, auto-replies and plain mail (``quiet``) change nothing. The figures and the
misses are printed (``pytest -s``) for the closing note.
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
from weekly_mailer.store.db import Database
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
    addresses = sorted({a.decode().lower() for d in files.values() for a in _EMAIL.findall(d)})
    with database.sessions.begin() as session:
        session.execute(
            insert(Subscriber),
            [
                {"email": a, "email_key": a, "status": SubscriberStatus.ACTIVE.value}
                for a in addresses
            ],
        )
    for name, data in files.items():
        with database.sessions() as session:
            apply_report(
                session, parse_report(data), bounce_limit=1, summary=IngestSummary(), now=NOW
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
        yield Outcome(name, labels[name], _describe(data), statuses)


def test_the_classifier_reads_the_sisimai_corpus(database: Database, corpus: Path) -> None:
    labels = _labels(corpus)
    assert len(labels) == 591
    outcomes = list(_ingest(database, corpus, labels))
    by_label: dict[str, list[Outcome]] = collections.defaultdict(list)
    for o in outcomes:
        by_label[o.label].append(o)

    def share(label: str, status: str) -> tuple[int, int]:
        return sum(status in o.changed for o in by_label[label]), len(by_label[label])

    hard, n_hard = share("hard", "bounced")
    soft_hard, n_soft = share("soft", "bounced")
    abuse, n_abuse = share("abuse", "complained")
    optout, n_optout = share("optout", "unsubscribed")
    wrong_complaints = [o for o in outcomes if o.label != "abuse" and "complained" in o.changed]
    quiet_changed = [o for o in by_label["quiet"] if o.changed]
    feedback_changed = [o for o in by_label["feedback-other"] if o.changed]

    print(f"\nsisimai corpus, {len(outcomes)} files:")
    print(f"  hard bounces bounced:       {hard}/{n_hard} = {hard / n_hard:.1%}")
    print(f"  soft failures bounced:      {soft_hard}/{n_soft} = {soft_hard / n_soft:.1%}")
    print(f"  abuse reports complained:   {abuse}/{n_abuse}")
    print(f"  opt-out reports unsubscribe: {optout}/{n_optout}")
    print(f"  complaints from non-abuse:  {len(wrong_complaints)}")
    print(f"  quiet messages that changed something: {len(quiet_changed)}/{len(by_label['quiet'])}")
    print(f"  other feedback that changed something: {len(feedback_changed)}")
    misses = (
        [o for o in by_label["hard"] if "bounced" not in o.changed]
        + [o for o in by_label["soft"] if "bounced" in o.changed]
        + [o for o in by_label["abuse"] if "complained" not in o.changed]
        + [o for o in by_label["optout"] if "unsubscribed" not in o.changed]
        + wrong_complaints
        + quiet_changed
        + feedback_changed
    )
    for o in misses:
        print(
            f"  miss {o.name} ({o.label}, changed: {sorted(o.changed) or 'nothing'}): {o.read_as}"
        )

    assert hard / n_hard >= 0.92
    assert soft_hard / n_soft <= 0.03
    assert abuse >= 12 and n_abuse == 13
    assert wrong_complaints == []
    assert optout == n_optout
    assert quiet_changed == [] and feedback_changed == []
