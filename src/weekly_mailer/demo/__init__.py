"""Package data for ``weekly-mailer demo``: a sample article written for this project."""

from __future__ import annotations

from importlib import resources


def sample_article() -> str:
    """The demo's Markdown article (with YAML front matter)."""
    return resources.files(__name__).joinpath("article.md").read_text(encoding="utf-8")
