"""Fixtures of the delivery tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.delivery import close_backends


@pytest.fixture(autouse=True)
def _close_backends() -> Iterator[None]:
    yield
    close_backends()
