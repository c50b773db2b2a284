"""Debian's Chromium driven by Playwright (never a browser that Playwright downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root, with nothing that would reach out of this machine.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_browser() -> None:
    """Skip (or, with WEEKLY_MAILER_TEST_REQUIRE_BROWSER=1, fail) when no browser is here."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "Playwright is not installed (pip install -e '.[test]')"
    if reason:
        if os.environ.get("WEEKLY_MAILER_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(
                f"a browser is required here (WEEKLY_MAILER_TEST_REQUIRE_BROWSER=1): {reason}"
            )
        pytest.skip(reason)
