"""Where the data files live: inside the installed wheel, or at the top of a checkout."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path


@cache
def data_dir(packaged: str, checkout: str) -> Path:
    """``weekly_mailer/<packaged>`` in a wheel, else ``<checkout root>/<checkout>``."""
    inside = Path(str(resources.files("weekly_mailer"))) / packaged
    if inside.is_dir():
        return inside
    return Path(__file__).resolve().parents[2] / checkout


def email_templates_dir() -> Path:
    """The built-in e-mail templates (``templates/email`` in a checkout)."""
    return data_dir("_templates", "templates") / "email"
