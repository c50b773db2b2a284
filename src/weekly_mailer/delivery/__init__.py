"""Delivery: every message we send goes through the outbox and this engine.

- :mod:`.backends`: the backend contract and the built-in backends (``smtp``, ``smtps``,
  ``file``, ``console``, ``memory``), resolved once from ``backend_url``; third-party ones
  through the ``weekly_mailer.backends`` entry-point group.
- :mod:`.runner`: the one delivery runner of every command (wake, stop, outages, a crew of
  ``processes``), with :mod:`.outages` (``ride_out``), :mod:`.processes` (the crew),
  :mod:`.process_child` and :mod:`.crew_shared`; :mod:`.run` runs it once for an issue or the
  waiting confirmations.
- :mod:`.worker`: the loop (claim, render, send, record), seeing the outbox through
  :mod:`.ports` (``store.outbox.SqlOutbox``), with :mod:`.attempts` (what a result means),
  :mod:`.pipeline` (chunks for a ``BatchBackend``) and :mod:`.threaded` (one at a time),
  :mod:`.leases` (the fence) and :mod:`.heartbeat` (its renewals), :mod:`.journal` (every
  acceptance, as it arrives), :mod:`.results` (the effects of results), :mod:`.policy`
  (backoff, throttling), :mod:`.ratelimit` and :mod:`.breaker`.
- :mod:`.envelopes`: the envelope sender (``bounce_address``) and the DKIM signature that
  every message gets, whatever its kind.
- :mod:`.render`: a claimed row to an ``Envelope`` (issue copies and confirmations alike).

The outbox table's state machine itself is :mod:`weekly_mailer.store.outbox`.
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
