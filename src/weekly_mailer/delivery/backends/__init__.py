"""Backends (resolved once from ``backend_url``): the contract in :mod:`.base`, one file each.

Built-in schemes: ``smtp``, ``smtps`` (the asyncio PIPELINING client; ``?engine=smtplib`` for the
older one),
``file``, ``console``, ``memory``. Third-party backends
register a factory in the ``weekly_mailer.backends`` entry-point group; the entry point's name is
the URL scheme and its object a callable ``factory(settings) -> Backend``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from weekly_mailer.config_checks import (
    BACKEND_SCHEMES,
    ENTRY_POINT_GROUP,
    known_schemes,
    register_scheme,
)
from weekly_mailer.delivery.backends.base import (
    Backend,
    BackendUnavailableError,
    Envelope,
    SendResult,
)
from weekly_mailer.errors import ConfigError

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

BackendFactory = Callable[["Settings"], Backend]


def _smtp(settings: Settings) -> Backend:
    from weekly_mailer.delivery.backends.smtp_url import parse_smtp_url

    if parse_smtp_url(settings.backend_url).engine != "smtplib":
        from weekly_mailer.delivery.backends.pipelined import PipelinedSMTPBackend

        return PipelinedSMTPBackend.from_url(settings.backend_url, settings)
    from weekly_mailer.delivery.backends.smtp import SMTPBackend

    return SMTPBackend.from_url(settings.backend_url, settings)


def _file(settings: Settings) -> Backend:
    from weekly_mailer.delivery.backends.file import FileBackend

    return FileBackend.from_url(settings.backend_url)


def _console(settings: Settings) -> Backend:
    from weekly_mailer.delivery.backends.console import ConsoleBackend

    return ConsoleBackend()


def _memory(settings: Settings) -> Backend:
    from weekly_mailer.delivery.backends.memory import MemoryBackend

    return MemoryBackend()


_FACTORIES: dict[str, BackendFactory] = {
    "smtp": _smtp,
    "smtps": _smtp,
    "file": _file,
    "console": _console,
    "memory": _memory,
}
# The built-in schemes are config_checks.BACKEND_SCHEMES, the one list of names.
REGISTRY: dict[str, BackendFactory] = {name: _FACTORIES[name] for name in BACKEND_SCHEMES}


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Add or replace the factory for a URL scheme (in-process; entry points are the way out);
    ``backend_url`` accepts the scheme from then on."""
    REGISTRY[scheme] = factory
    register_scheme(scheme)


def available_schemes() -> list[str]:
    """Every scheme this installation knows: built in, registered, or from entry points."""
    return known_schemes()


def factory_for(scheme: str) -> BackendFactory:
    """The factory for a scheme, or ``ConfigError`` naming the known ones."""
    if scheme in REGISTRY:
        return REGISTRY[scheme]
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=scheme):
        try:
            loaded = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in is a configuration problem
            raise ConfigError(
                f"backend_url: the {scheme!r} backend ({ep.value}) failed to load: {exc}"
            ) from exc
        if not callable(loaded):
            raise ConfigError(f"backend_url: the {scheme!r} backend ({ep.value}) is not callable")
        factory: BackendFactory = loaded
        return factory
    raise ConfigError(
        f"backend_url: unknown scheme {scheme!r} (known: {', '.join(available_schemes())})"
    )


def resolve_backend(settings: Settings) -> Backend:
    """Build the backend named by ``settings.backend_url``; unknown schemes fail here, early."""
    scheme = urlsplit(settings.backend_url).scheme
    if not scheme:
        raise ConfigError(f"backend_url: {settings.backend_url!r} is not a URL")
    backend = factory_for(scheme)(settings)
    if not isinstance(backend, Backend):
        raise ConfigError(f"backend_url: the {scheme!r} backend does not implement send/close")
    return backend


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
