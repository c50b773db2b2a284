"""Where the data files live: inside the installed wheel, or at the top of a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(packaged: str, checkout: str, *, marker: str) -> Path | None:
    """``weekly_mailer/<packaged>`` in a wheel, else ``<checkout root>/<checkout>``: the first
    that holds ``marker``, or ``None`` when neither does."""
    for candidate in (_PACKAGE / packaged, _PACKAGE.parents[1] / checkout):
        if (candidate / marker).exists():
            return candidate
    return None
