"""weekly_mailer: a self-hosted weekly newsletter service."""

from __future__ import annotations

__version__ = "0.1.0"
