"""A week's proof: the issue composed as it will go out, its summary, each editor's copy queued.

Two steps, so no transaction is held while the article is fetched and the links are tried:

1. :func:`plan_proof` (after ``issues.look_at_week`` and ``issues.plan_week``, the very path the
   send takes, so the article choice and the skeleton are the send's): ``None`` when the week
   has its issue already, or its latest proof has this content (nothing new to show); else the
   plan, its content hash and the link check's findings.
2. :func:`store_proof` (a session): the ``proof`` row (not enqueued: the issue row is made at the
   send time, as before), one ``proof_copy`` per editor with its message, and one outbox row of
   kind ``proof`` for each (delivered like a confirmation: envelope sender, DKIM, retries).

An editor who is no subscriber gets a subscriber row of status ``editor`` (no reader: left out of
counts, lists and exports, never enqueued), so the outbox row has its recipient.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import hashlib
from email.message import EmailMessage
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from weekly_mailer.compose import Recipient, make_message_id, manage_url, unsubscribe_url
from weekly_mailer.compose.lint import lint_issue
from weekly_mailer.compose.proof_mail import build_proof_message
from weekly_mailer.preflight.message import CLIP_BYTES, html_size
from weekly_mailer.proofs.links import BrokenLink, check_links, links_of
from weekly_mailer.proofs.summary import summary_text
from weekly_mailer.store import outbox
from weekly_mailer.store.models import DeliveryKind, Subscriber, SubscriberStatus
from weekly_mailer.store.proof_models import Proof, ProofCopy
from weekly_mailer.subscribers.reader import count_paused
from weekly_mailer.subscribers.rules import normalise_address
from weekly_mailer.tokens import Purpose, signer_for

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.compose import ComposedIssue
    from weekly_mailer.config import Settings
    from weekly_mailer.issues import WeekPlan


def content_hash(composed: ComposedIssue) -> str:
    """What an approval is bound to: the subject, the HTML and the text as composed."""
    digest = hashlib.sha256()
    for part in (composed.subject, composed.html_template, composed.text_template):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def latest_proof(session: Session, week: dt.date) -> Proof | None:
    query = select(Proof).where(Proof.send_week == week).order_by(Proof.id.desc()).limit(1)
    return session.scalars(query).first()


@dataclasses.dataclass(frozen=True, slots=True)
class ProofPlan:
    plan: WeekPlan
    fire: dt.datetime
    content_hash: str
    links: tuple[str, ...]
    broken: tuple[BrokenLink, ...]
    replaces: int | None  # the proof this one supersedes (the article changed)


def plan_proof(
    session: Session, plan: WeekPlan, *, fire: dt.datetime, own: str = ""
) -> ProofPlan | None:
    """The proof to mail for ``plan`` (see the module docstring), its links not tried yet
    (:func:`try_links`, outside the transaction)."""
    if plan.composed is None:  # the week's issue exists: it is (being) sent
        return None
    digest = content_hash(plan.composed)
    latest = latest_proof(session, plan.week)
    if latest is not None and latest.content_hash == digest:
        return None
    replaces = latest.id if latest is not None else None
    links = tuple(links_of(plan.composed.html_template, own=own.rstrip("/")))
    return ProofPlan(plan, fire, digest, links, (), replaces)


def try_links(proof_plan: ProofPlan, *, timeout: float = 10.0) -> ProofPlan:
    """``proof_plan`` with the links that do not work (each link tried; see ``links``)."""
    broken = tuple(check_links(list(proof_plan.links), timeout=timeout))
    return dataclasses.replace(proof_plan, broken=broken)


def editor_row(session: Session, editor: str, *, now: dt.datetime) -> Subscriber:
    """The subscriber row an editor's proofs are queued for (one of status ``editor`` if the
    address is no subscriber)."""
    address, key = normalise_address(parseaddr(editor)[1] or editor)
    sub = session.scalars(select(Subscriber).where(Subscriber.email_key == key)).one_or_none()
    if sub is None:
        sub = Subscriber(
            email=address,
            email_key=key,
            name="",
            status=SubscriberStatus.EDITOR.value,
            source="editors",
            created_at=now,
            updated_at=now,
        )
        session.add(sub)
        session.flush()
    return sub


def decision_url(settings: Settings, copy: ProofCopy, proof: Proof, purpose: Purpose) -> str:
    """``{base_url}/proof/{token}``: an approve or veto link for one editor's copy, bound to
    the proof's content (a token of another proof, or of changed content, does nothing)."""
    token = signer_for(settings.secret_key).make(
        purpose, copy.id, copy.editor.lower(), bound_to=proof.content_hash
    )
    return f"{settings.base_url.rstrip('/')}/proof/{token}"


def store_proof(
    session: Session, settings: Settings, proof_plan: ProofPlan, *, now: dt.datetime
) -> Proof:
    """Store the proof and queue one copy per editor, in the caller's transaction."""
    plan = proof_plan.plan
    composed = plan.composed
    assert composed is not None and plan.chosen is not None
    lint = lint_issue(
        composed.html_template,
        composed.text_template,
        postal_address=settings.postal_address,
        title=plan.chosen.article.title,
    )
    proof = Proof(
        send_week=plan.week,
        content_hash=proof_plan.content_hash,
        fire_at=proof_plan.fire.astimezone(dt.UTC),
        subject=composed.subject,
        title=plan.chosen.article.title,
        source=plan.chosen.source,
        source_key=plan.chosen.source_key,
        skeleton=composed.skeleton,
        summary={},
        created_at=now,
    )
    session.add(proof)
    session.flush()
    date = now.replace(microsecond=0)
    paused = count_paused(session, now=proof_plan.fire)  # skipped by the enqueue
    summary: dict[str, Any] = {}
    for editor in settings.editors:
        sub = editor_row(session, editor, now=now)
        copy = _copy_for(settings, composed, plan.week, sub, date=date)
        size = _html_bytes(copy)
        summary = {
            "readers": max(0, plan.todo - paused),
            "paused": paused,
            "lint": list(lint.warnings),
            "links": len(proof_plan.links),
            "broken": [b.line() for b in proof_plan.broken],
            "html_bytes": size,
            "clipped": size > CLIP_BYTES,
            "replaces": proof_plan.replaces,
        }
        delivery_id = outbox.enqueue_mail(session, sub.id, DeliveryKind.PROOF, now=now)
        row = ProofCopy(
            proof_id=proof.id,
            editor=sub.email,
            delivery_id=delivery_id,
            message_id=make_message_id(settings, f"proof-{proof.id}", sub.id),
            message=b"",
        )
        session.add(row)
        session.flush()
        text = summary_text(
            settings,
            proof,
            summary,
            approve_url=decision_url(settings, row, proof, Purpose.APPROVE),
            veto_url=decision_url(settings, row, proof, Purpose.VETO),
        )
        row.message = build_proof_message(
            settings, to=sub.email, subject=composed.subject, summary=text, copy=copy,
            date=date, message_id=row.message_id,
        )  # fmt: skip
    proof.summary = summary
    session.flush()
    return proof


def _copy_for(
    settings: Settings, composed: ComposedIssue, week: dt.date, sub: Subscriber, *,
    date: dt.datetime,
) -> bytes:  # fmt: skip
    """The issue exactly as this editor would get it as a reader (their personal fields)."""
    recipient = Recipient(
        sub.id,
        sub.email,
        sub.name,
        unsubscribe_url(settings, sub.id, sub.email_key),
        manage_url(settings, sub.id, sub.email_key),
    )
    return composed.message_for(
        recipient, message_id=make_message_id(settings, week, sub.id), date=date
    )


def _html_bytes(copy: bytes) -> int:
    message = email.message_from_bytes(copy, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return html_size(message)
