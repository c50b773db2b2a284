"""The composer: an :class:`~weekly_mailer.articles.Article` → a client-safe issue, rendered once,
and a cheap per-recipient fill.

Modules: :mod:`.render` (Jinja2 + premailer, once per issue), :mod:`.personalise` (the fast
per-recipient byte fill, and its SMTP wire form), :mod:`.message` (headers, the slow
``EmailMessage`` reference path, the confirmation email), :mod:`.headers` (header safety),
:mod:`.names` (the one display-name rule), :mod:`.placeholders` (the markers the fill replaces),
:mod:`.links` (Message-IDs, unsubscribe, confirm and archive URLs), :mod:`.lint`, :mod:`.text`
(HTML → plain text, tables as aligned rows).

Typical use (as :mod:`weekly_mailer.delivery.render` does for each claimed row)::

    issue = compose_issue(article, settings, send_week=week, issue_id=issue_id)  # once
    data = personalise(issue.skeleton, Recipient(sub.id, sub.email, sub.name,
                                                 unsubscribe_url(settings, sub.id, sub.email_key)),
                       message_id=make_message_id(settings, week, sub.id), date=now)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import TYPE_CHECKING

from weekly_mailer.compose.headers import POLICY, address_of
from weekly_mailer.compose.links import (
    archive_url,
    confirm_url,
    confirmation_message_id,
    find_message_ids,
    issue_key,
    make_message_id,
    manage_url,
    read_message_id,
    unsubscribe_url,
)
from weekly_mailer.compose.lint import LintReport, lint_issue
from weekly_mailer.compose.message import (
    DKIM_HEADERS,
    DKIM_PRESENT_HEADERS,
    Recipient,
    build_confirmation_message,
    build_reference_message,
)
from weekly_mailer.compose.personalise import (
    build_skeleton,
    personalise,
    personalise_for_smtp,
    wire_clean,
)
from weekly_mailer.compose.render import render_issue

if TYPE_CHECKING:
    from email.message import EmailMessage

    from weekly_mailer.articles import Article
    from weekly_mailer.config import Settings

__all__ = [
    "DKIM_HEADERS",
    "DKIM_PRESENT_HEADERS",
    "POLICY",
    "ComposedIssue",
    "LintReport",
    "Recipient",
    "archive_url",
    "build_confirmation_message",
    "build_reference_message",
    "compose_issue",
    "confirm_url",
    "confirmation_message_id",
    "envelope_sender",
    "make_message_id",
    "manage_url",
    "personalise",
    "personalise_for_smtp",
    "find_message_ids",
    "read_message_id",
    "unsubscribe_url",
    "wire_clean",
]


@dataclasses.dataclass(frozen=True)
class ComposedIssue:
    """An issue composed once: store these fields with the issue row.

    ``html_template``/``text_template`` hold the placeholder markers; ``archive_html`` is the
    "view in browser" page with no personal data; ``skeleton`` is the serialised
    ``multipart/alternative`` message with markers, for :func:`personalise`.
    """

    subject: str
    html_template: str
    text_template: str
    archive_html: str
    skeleton: bytes
    lint: LintReport
    boundary: str
    issue_key: str
    archive_url: str

    def message_for(self, recipient: Recipient, *, message_id: str, date: dt.datetime) -> bytes:
        """The fast path for one recipient (see :func:`personalise`)."""
        return personalise(self.skeleton, recipient, message_id=message_id, date=date)

    def reference_message(
        self, settings: Settings, recipient: Recipient, *, message_id: str, date: dt.datetime
    ) -> EmailMessage:
        """The slow reference path for one recipient (see :func:`build_reference_message`)."""
        return build_reference_message(
            settings,
            subject=self.subject,
            html_template=self.html_template,
            text_template=self.text_template,
            boundary=self.boundary,
            recipient=recipient,
            message_id=message_id,
            date=date,
            issue_key=self.issue_key,
        )


def compose_issue(
    article: Article,
    settings: Settings,
    *,
    send_week: dt.date,
    issue_id: int | None = None,
    subject_prefix: str = "",
) -> ComposedIssue:
    """Render, inline and serialise the issue once; lint it.

    The archive link and Message-IDs use ``issue_id`` when given, else the send week
    (``YYYY-MM-DD``). ``subject_prefix`` is e.g. ``"[TEST] "`` for test sends. Raises
    :class:`~weekly_mailer.errors.ComposeError` when a template or a header value is unusable.
    """
    key = issue_key(issue_id if issue_id is not None else send_week)
    archive = archive_url(settings, key)
    rendered = render_issue(article, settings, archive_url=archive)
    subject = subject_prefix + article.title
    digest = hashlib.sha256(
        (subject + rendered.text_template + rendered.html_template).encode("utf-8")
    ).hexdigest()
    boundary = f"=_wm_{digest[:24]}"
    skeleton = build_skeleton(
        settings,
        subject=subject,
        text_template=rendered.text_template,
        html_template=rendered.html_template,
        boundary=boundary,
        issue_key=key,
    )
    report = lint_issue(
        rendered.html_template,
        rendered.text_template,
        postal_address=settings.postal_address,
        title=article.title,
    )
    return ComposedIssue(
        subject=subject,
        html_template=rendered.html_template,
        text_template=rendered.text_template,
        archive_html=rendered.archive_html,
        skeleton=skeleton,
        lint=report,
        boundary=boundary,
        issue_key=key,
        archive_url=archive,
    )


def envelope_sender(settings: Settings) -> str:
    """The SMTP MAIL FROM address (where bounces go): ``bounce_address`` when it is set, else
    the bare address of ``from_address``."""
    return address_of(settings.bounce_address or settings.from_address)
