"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def require_tool() -> Callable[..., str]:
    """Return a function that finds a system tool or stops the test.

    Outside CI a missing tool skips the test with the install hint; when ``CI`` is set a missing
    tool fails the test, so a CI run never passes by skipping silently.
    """

    def _require(name: str, *, package: str | None = None) -> str:
        path = shutil.which(name) or (
            name if Path(name).is_absolute() and os.access(name, os.X_OK) else None
        )
        if path:
            return path
        message = f"{name} is missing: apt-get install -y {package or name}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
        raise AssertionError  # pragma: no cover (skip raises)

    return _require
