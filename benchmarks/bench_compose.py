"""Compose once, personalise many: the composer's figures, all measured in the same run.

1. compose-once, cold: a fresh interpreter imports the package, then the first
   ``load_article`` + ``compose_issue`` of the article (the seed by default) is timed, separately
   from the imports (premailer and cssutils alone import in ~0.3 s);
2. personalise + serialise, one core: the fast path (``personalise``: fill the skeleton's
   bytes), the reference path (``build_reference_message`` + ``as_bytes``: one ``EmailMessage``
   per recipient), and the floor: plain byte substitution of constant values into the same
   skeleton, with no escaping, encoding or checking.

Targets (issue 3): fast path >= 20,000 msg/s and >= 40x the reference; compose-once < 200 ms.

    .venv/bin/python benchmarks/bench_compose.py [--article PATH] [--recipients 20000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import email.policy
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seeds" / "000_495e8089be07fca3.txt"
FALLBACK_ARTICLE = ROOT / "tests" / "data" / "article.md"

COLD = r"""
import json, sys, time
t0 = time.perf_counter()
import datetime as dt
from weekly_mailer.articles import load_article
from weekly_mailer.compose import compose_issue
from weekly_mailer.compose.render import inline_css  # noqa: F401  (premailer is imported lazily)
import premailer  # noqa: F401
from weekly_mailer.config import Settings
t1 = time.perf_counter()
settings = Settings(secret_key="bench", base_url="https://news.example.org",
                    from_address="In Brief <news@example.org>", postal_address="1 Example St")
issue = compose_issue(load_article(sys.argv[1]), settings, send_week=dt.date(2026, 11, 25))
t2 = time.perf_counter()
warm = []
for _ in range(5):
    t = time.perf_counter()
    compose_issue(load_article(sys.argv[1]), settings, send_week=dt.date(2026, 11, 25))
    warm.append(time.perf_counter() - t)
print(json.dumps({"imports": t1 - t0, "first": t2 - t1, "warm": min(warm),
                  "skeleton_bytes": len(issue.skeleton)}))
"""

FIRST = ["Ana", "Zoë", "Li", "Oluwaseun", "María José", "Dr. Ann", "O'Brien", "李小龍", ""]
LAST = ["Okafor", "Müller", "Smith", "Nguyễn", "de la Cruz", "Kowalski", ""]


def cold_compose(article: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", COLD, article], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def best_rate(fn, items: list, repeat: int = 3) -> float:  # type: ignore[no-untyped-def,type-arg]
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = max(best, len(items) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--article", default=str(SEED if SEED.exists() else FALLBACK_ARTICLE))
    parser.add_argument("--recipients", type=int, default=20000)
    parser.add_argument("--reference", type=int, default=1000, help="messages for the slow path")
    args = parser.parse_args()

    from weekly_mailer.articles import load_article
    from weekly_mailer.compose import (
        POLICY,
        Recipient,
        compose_issue,
        make_message_id,
        personalise,
        unsubscribe_url,
    )
    from weekly_mailer.compose.personalise import _plan
    from weekly_mailer.config import Settings

    cold = cold_compose(args.article)

    settings = Settings(
        secret_key="bench",
        base_url="https://news.example.org",
        from_address="In Brief <news@example.org>",
        postal_address="1 Example St",
        unsubscribe_mailto="leave@example.org",
    )
    week = dt.date(2026, 11, 25)
    issue = compose_issue(load_article(args.article), settings, send_week=week, issue_id=1)
    rng = random.Random(5)
    people = []
    for i in range(args.recipients):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}".strip()
        addr = f"reader.{i}+news@example{i % 97}.org"
        people.append(
            (
                Recipient(i, addr, name, unsubscribe_url(settings, i, addr)),
                make_message_id(settings, 1, i),
            )
        )
    date = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)
    skeleton = issue.skeleton

    def fast(item: tuple[Recipient, str]) -> bytes:
        return personalise(skeleton, item[0], message_id=item[1], date=date)

    def reference(item: tuple[Recipient, str]) -> bytes:
        msg = issue.reference_message(settings, item[0], message_id=item[1], date=date)
        return msg.as_bytes(policy=POLICY)

    pieces, slots, _clean = _plan(skeleton)
    constant = [b"x" * 24 for _ in range(1 + max((slot for _, slot in slots), default=0))]

    def floor(item: tuple[Recipient, str]) -> bytes:
        out = list(pieces)
        for index, slot in slots:
            out[index] = constant[slot]
        return b"".join(out)

    # The two paths agree (a sample; the property test covers the rest).
    for item in people[:: max(len(people) // 50, 1)]:
        a = email.message_from_bytes(fast(item), policy=email.policy.default)
        b = email.message_from_bytes(reference(item), policy=email.policy.default)
        assert a.items() == b.items(), item
        assert [p.get_content() for p in a.iter_parts()] == [
            p.get_content() for p in b.iter_parts()
        ]

    floor_rate = best_rate(floor, people)
    fast_rate = best_rate(fast, people)
    ref_rate = best_rate(reference, people[: args.reference], repeat=2)

    ms = 1000.0
    print(f"article: {args.article}")
    print(f"skeleton: {cold['skeleton_bytes']} bytes; recipients: {len(people)}")
    print(
        f"compose-once, cold (first call in a fresh process): {cold['first'] * ms:.0f} ms "
        f"(imports before it: {cold['imports'] * ms:.0f} ms; warm: {cold['warm'] * ms:.0f} ms)"
    )
    print(f"floor (plain byte substitution):  {floor_rate:12,.0f} msg/s")
    print(
        f"fast path (personalise):          {fast_rate:12,.0f} msg/s  "
        f"= {fast_rate / floor_rate:.2f}x the floor"
    )
    print(
        f"reference (EmailMessage):         {ref_rate:12,.0f} msg/s  "
        f"= {ref_rate / floor_rate:.4f}x the floor"
    )
    print(f"fast / reference: {fast_rate / ref_rate:.0f}x")
    checks = [
        ("fast path >= 20,000 msg/s", fast_rate >= 20000),
        ("fast path >= 40x reference", fast_rate >= 40 * ref_rate),
        ("compose-once < 200 ms (cold first call)", cold["first"] < 0.2),
    ]
    for label, ok in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {label}")


if __name__ == "__main__":
    main()
