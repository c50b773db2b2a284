"""The deliverability pre-flight: will mailbox providers take this week's send?

Checks, each one line (:class:`~.model.Check`: ``ok``, ``warn`` or ``fail``, a failure naming
its fix), run by ``doctor`` and, per ``preflight``, before each send:

- :mod:`.records`: DKIM (each selector's TXT record holds our public key), SPF of the envelope
  domain (one valid record, at most 10 DNS-querying terms, not ``+all``; :mod:`.spf`), DMARC
  (exists, valid, DKIM ``d=`` and the envelope domain aligned as ``adkim``/``aspf`` say), the
  bounce domain accepts mail (MX, or an address);
- :mod:`.relay`: the relay answers, TLS verifies, the login and our envelope sender are taken
  (nothing is sent);
- :mod:`.oneclick`: RFC 8058 one-click unsubscribe through the public ``base_url`` answers 2xx;
- :mod:`.message`: this week's HTML under Gmail's 102 KB, its List-Unsubscribe headers signed.

DNS goes through :mod:`.dns` (dnspython; ``dns_resolver`` or the system's resolver; answers
cached for their TTL; a silent resolver is a ``warn``). The gate (:func:`hold_week`) holds the
week as the list-health guard does (a ``week_hold`` row, shown in ``issues list``, released by
``issues release``) when ``preflight = "refuse"`` and something fails.

This package sits above ``issues`` and ``delivery`` (it reads the DKIM keys and places holds);
the edges call it. Functions take a session where they need one, and never commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

from weekly_mailer.issues.health import refusal
from weekly_mailer.issues.ledger import (
    PREFLIGHT_REASON,
    active_holds,
    place_hold,
    released_preflight,
)
from weekly_mailer.preflight.dns import DnsUnavailable, Lookup
from weekly_mailer.preflight.message import check_message
from weekly_mailer.preflight.model import FAIL, OK, WARN, Check, warn
from weekly_mailer.preflight.oneclick import check_one_click
from weekly_mailer.preflight.records import (
    check_bounce_domain,
    check_dkim,
    check_dmarc,
    check_spf,
)
from weekly_mailer.preflight.relay import check_relay, is_smtp
from weekly_mailer.store.hold_models import WeekHold

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from weekly_mailer.config import Settings
    from weekly_mailer.issues.prepare import WeekLook

MODES = ("warn", "refuse", "off")


def dns_checks(settings: Settings, lookup: Lookup | None = None) -> list[Check]:
    """DKIM, SPF, DMARC and the bounce domain."""
    try:
        lookup = lookup or Lookup(settings.dns_resolver)
    except DnsUnavailable as exc:
        return [warn("dns", f"DNS: {exc}: DKIM, SPF, DMARC and MX not checked")]
    return [
        *check_dkim(settings, lookup),
        check_spf(settings, lookup),
        check_dmarc(settings, lookup),
        check_bounce_domain(settings, lookup),
    ]


def run_checks(
    settings: Settings,
    *,
    skeleton: bytes | None = None,
    now: dt.datetime | None = None,
    lookup: Lookup | None = None,
) -> list[Check]:
    """Every check for an ``smtp://``/``smtps://`` backend (others reach no mailbox provider:
    nothing to check), the message's when ``skeleton`` (this week's issue) is given."""
    if not is_smtp(settings):
        return []
    out = [check_relay(settings), *dns_checks(settings, lookup), check_one_click(settings)]
    if skeleton is not None:
        out.extend(check_message(settings, skeleton, now=now or dt.datetime.now(dt.UTC)))
    return out


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.failed]


def before_send(settings: Settings) -> list[Check]:
    """The checks ``send`` and the daemon run before a send, per ``preflight``: the relay first
    (also with ``off``: a relay that refuses us fails every message), then, unless ``off``, DNS
    and one-click; nothing for a backend that is not SMTP. A ``fatal`` relay check comes alone
    (the rest would not change the answer)."""
    if not is_smtp(settings):
        return []
    relay = check_relay(settings)
    if relay.fatal or settings.preflight == "off":
        return [relay]
    return [relay, *dns_checks(settings), check_one_click(settings)]


def hold_week(
    session: Session, *, week: dt.date, checks: list[Check], now: dt.datetime
) -> WeekHold | None:
    """Hold ``week`` for its failed checks (``preflight = "refuse"``), as the list-health guard
    holds a week; ``None`` when nothing failed, the week is held already, or an operator released
    a pre-flight hold of this week (released means: send it as it is)."""
    failed = failures(checks)
    if not failed or released_preflight(session, week):
        return None
    if any(h.send_week == week and h.reason.startswith(PREFLIGHT_REASON)
           for h in active_holds(session)):  # fmt: skip
        return None
    reason = PREFLIGHT_REASON + "; ".join(c.what for c in failed)
    hold = WeekHold(send_week=week, issue_id=None, reason=reason, held_at=now, released_by="")
    return place_hold(session, hold)


def held_look(
    session: Session, look: WeekLook, checks: list[Check], *, now: dt.datetime
) -> WeekLook:
    """``look`` held by the pre-flight's failures (:func:`hold_week`), so that ``plan_week``
    refuses it as it refuses a week the list-health guard holds (exit 3); a week already held,
    or an enqueued issue being continued, is left as it is."""
    if look.held or (look.existing is not None and look.existing.enqueued):
        return look
    hold = hold_week(session, week=look.week, checks=checks, now=now)
    return look if hold is None else dataclasses.replace(look, held=refusal(hold))


__all__ = [
    "FAIL",
    "MODES",
    "OK",
    "WARN",
    "Check",
    "before_send",
    "dns_checks",
    "failures",
    "held_look",
    "hold_week",
    "is_smtp",
    "run_checks",
]
