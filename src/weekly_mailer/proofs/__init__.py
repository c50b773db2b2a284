"""Proofs: the editors see the week's issue before it goes out, and may approve or veto it.

- :mod:`.make`: the issue composed as the send will compose it (``issues.look_at_week`` →
  ``plan_week``), stored as a ``proof`` without enqueueing, mailed to each ``editors`` address
  through the outbox (a delivery row of kind ``proof``) with ``[Proof]`` in the subject and
  :mod:`.summary` at the top.
- :mod:`.links`: every link of the issue tried (HEAD, then GET), the broken ones listed.
- :mod:`.approval`: approve and veto (CLI and the proof's signed links), bound to the content;
  the gate the weekly job asks before it enqueues.

Sits above ``preflight`` (it reads the message size rule) and below the edges. Functions take a
session where they need one and never commit.
"""

from __future__ import annotations

from weekly_mailer.proofs.approval import (
    LinkTarget,
    WeekApproval,
    decide,
    gate,
    next_week_to_send,
    read_link,
    recent_weeks,
    week_approval,
)
from weekly_mailer.proofs.links import BrokenLink, check_links, links_of
from weekly_mailer.proofs.make import (
    ProofPlan,
    content_hash,
    latest_proof,
    plan_proof,
    store_proof,
    try_links,
)
from weekly_mailer.store.proof_models import Decision

__all__ = [
    "BrokenLink",
    "Decision",
    "LinkTarget",
    "ProofPlan",
    "WeekApproval",
    "check_links",
    "content_hash",
    "decide",
    "gate",
    "latest_proof",
    "links_of",
    "next_week_to_send",
    "plan_proof",
    "read_link",
    "recent_weeks",
    "store_proof",
    "try_links",
    "week_approval",
]
