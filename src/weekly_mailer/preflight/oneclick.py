"""One-click unsubscribe (RFC 8058) through the public ``base_url``: the POST a mailbox provider
sends, with a signed probe token for no subscriber (``compose.links.probe_unsubscribe_url``), which
the unsubscribe route answers 200 while changing nothing."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from weekly_mailer.compose.links import probe_unsubscribe_url
from weekly_mailer.preflight.model import Check, fail, ok

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

BODY = b"List-Unsubscribe=One-Click"
TIMEOUT = 10.0


def check_one_click(settings: Settings, *, timeout: float = TIMEOUT) -> Check:
    url = probe_unsubscribe_url(settings)
    base = settings.base_url.rstrip("/")
    request = urllib.request.Request(  # noqa: S310 - base_url is http(s), checked in config
        url,
        data=BODY,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "weekly-mailer pre-flight",
        },
    )
    fix = (
        f"serve the web app at {base} (`weekly-mailer serve`, behind your proxy) so that "
        "POST /unsubscribe/<token> reaches it"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return fail("one-click", f"one-click unsubscribe: {base} does not answer ({reason}); {fix}")
    if 200 <= status < 300:
        return ok("one-click", f"one-click unsubscribe: POST {base}/unsubscribe/… answers {status}")
    return fail(
        "one-click",
        f"one-click unsubscribe: POST {base}/unsubscribe/… answers {status}, not 2xx (Gmail and "
        f"Yahoo require it to work); {fix}",
    )
