"""Logging for every process of ours (the CLI, the daemon, its delivery processes): our own
loggers (``weekly_mailer.*``) at ``log_level``; third-party libraries (flufl.bounce, alembic,
apscheduler, urllib3…) at WARNING unless ``log_level = "DEBUG"``, so their chatter (17 INFO
lines of flufl.bounce for every bounce read) stays out of a command's output."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(log_level: str) -> None:
    """Configure the root logger once (a later call changes only the levels)."""
    level = log_level.upper()
    logging.basicConfig(level=level if level == "DEBUG" else logging.WARNING, format=FORMAT)
    logging.getLogger().setLevel(level if level == "DEBUG" else logging.WARNING)
    logging.getLogger("weekly_mailer").setLevel(level)
