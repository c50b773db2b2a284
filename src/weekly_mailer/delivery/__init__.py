"""Delivery: every message we send goes through the outbox and this engine.

- :mod:`.backends`: the backend contract and the built-in backends (``smtp``, ``smtps``,
  ``file``, ``console``, ``memory``), resolved once from ``backend_url``; third-party ones
  through the ``weekly_mailer.backends`` entry-point group.
- :mod:`.outbox`: the outbox table's state machine (enqueue, claim, record, release, retry).
- :mod:`.envelopes`: the envelope sender (``bounce_address``) and the DKIM signature that
  every message gets, whatever its kind.
- :mod:`.render`: a claimed row to an ``Envelope`` (issue copies and confirmations alike).
- :mod:`.worker`: the loop, with :mod:`.policy` (backoff, throttling) and :mod:`.ratelimit`.
- :mod:`.run`: running a worker for one issue or for everything due.
"""

from __future__ import annotations

from weekly_mailer.delivery.backends import (
    ENTRY_POINT_GROUP,
    REGISTRY,
    BackendFactory,
    available_schemes,
    factory_for,
    register_backend,
    resolve_backend,
)
from weekly_mailer.delivery.backends.base import (
    Backend,
    BackendUnavailableError,
    Envelope,
    SendResult,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "Backend",
    "BackendFactory",
    "BackendUnavailableError",
    "Envelope",
    "SendResult",
    "available_schemes",
    "factory_for",
    "register_backend",
    "resolve_backend",
]
