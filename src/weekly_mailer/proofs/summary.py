"""The summary at the top of a proof: what goes out, to how many, when, and what to look at."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weekly_mailer.config import Settings
    from weekly_mailer.store.proof_models import Proof

APPROVAL_LINES = {
    "none": "Approval: not needed (approval = none): it goes out as it is.",
    "veto": "Approval: it goes out unless an editor vetoes it (approval = veto).",
    "required": "Approval: REQUIRED. It goes out only once an editor approves this content "
    "(approval = required).",
}


def local_and_utc(moment: dt.datetime, zone: zoneinfo.ZoneInfo) -> str:
    """``Wed 2026-12-09 18:00 PST (Thu 2026-12-10 02:00 UTC)``."""
    local, utc = moment.astimezone(zone), moment.astimezone(dt.UTC)
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname()} ({utc:%a %Y-%m-%d %H:%M} UTC)"


def summary_text(
    settings: Settings,
    proof: Proof,
    summary: dict[str, Any],
    *,
    approve_url: str,
    veto_url: str,
) -> str:
    """The plain-text summary of one editor's proof."""
    lint = [str(w) for w in summary.get("lint") or []]
    broken = [str(b) for b in summary.get("broken") or []]
    size = int(summary.get("html_bytes") or 0)
    clipped = bool(summary.get("clipped"))
    lines = [
        f"PROOF of {settings.list_name} for the week of {proof.send_week}: the issue below is "
        "exactly what readers will get (only the personal fields differ).",
        "",
        f"Article: {proof.title}",
        f"Source: {proof.source}",
        f"Readers: {summary.get('readers', 0)} will get it"
        + (f" ({summary['paused']} more paused)" if summary.get("paused") else ""),
        f"Goes out: {local_and_utc(proof.fire_at, settings.zone)}",
        f"Size: the HTML is {size / 1024:.1f} KB"
        + (
            ": OVER Gmail's 102 KB, Gmail will clip it ([Message clipped])"
            if clipped
            else " (Gmail clips past 102 KB)"
        ),
    ]
    if summary.get("replaces"):
        lines.append("This proof replaces an earlier one: the content changed since.")
    lines += ["", f"Lint warnings: {len(lint)}" if lint else "Lint warnings: none"]
    lines += [f"  - {w}" for w in lint]
    checked = summary.get("links", 0)
    if broken:
        lines += ["", f"Links that do not work: {len(broken)} of {checked}"]
        lines += [f"  - {b}" for b in broken]
    else:
        lines += ["", f"Links: all {checked} work"]
    lines += ["", APPROVAL_LINES.get(settings.approval, "")]
    if settings.approval != "none":
        lines += [
            "",
            "Approve (opens a page with a button):",
            approve_url,
            "",
            "Veto (opens a page with a button):",
            veto_url,
            "",
            f"Or: weekly-mailer issues approve {proof.send_week} --by NAME",
            f"    weekly-mailer issues veto {proof.send_week} --by NAME --reason TEXT",
        ]
    lines += ["", "-" * 60, ""]
    return "\n".join(lines)
