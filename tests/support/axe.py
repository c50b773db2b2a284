"""axe-core (the npm package, installed by scripts/test.sh into tests/.node) run inside a page.

``violations(page)`` injects ``axe.min.js`` and returns axe's violations as
``[(rule id, impact, [target, ...]), ...]``: empty when the page passes every rule axe runs by
default (WCAG 2 A/AA and best practices, colour contrast included, in the page's current colour
scheme). The page's context must be made with ``bypass_csp=True``: our pages forbid inline
script, rightly, and axe is injected as one.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "tests" / ".node" / "node_modules" / "axe-core" / "axe.min.js"
AXE = Path(os.environ.get("WEEKLY_MAILER_TEST_AXE", BUNDLED))


def require_axe() -> None:
    """Skip (or, with WEEKLY_MAILER_TEST_REQUIRE_BROWSER=1, fail) when axe-core is missing."""
    if AXE.exists():
        return
    reason = f"{AXE} is missing (npm install --prefix tests/.node axe-core@4; scripts/test.sh does)"
    if os.environ.get("WEEKLY_MAILER_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"axe-core is required here (WEEKLY_MAILER_TEST_REQUIRE_BROWSER=1): {reason}")
    pytest.skip(reason)


@functools.cache
def _script() -> str:
    return AXE.read_text(encoding="utf-8")


def violations(page: Any) -> list[tuple[str, str, list[str]]]:
    """axe's violations on the page as it is now."""
    page.add_script_tag(content=_script())
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document)).violations.map(v => ({id: v.id,"
        " impact: v.impact, targets: v.nodes.map(n => n.target.join(' '))}))"
    )
    return [(v["id"], v["impact"] or "", v["targets"]) for v in found]
