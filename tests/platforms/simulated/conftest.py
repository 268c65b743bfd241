"""Fixtures for the simulated platform tests: one PKI per module keeps the suite fast."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sanctum.platforms.simulated import SimulationPki

#: A fixed "now" for every simulated-platform test (no wall clock in tests).
NOW = datetime(2026, 11, 28, 7, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def now() -> datetime:
    return NOW


@pytest.fixture(scope="module")
def pki() -> SimulationPki:
    return SimulationPki.create(now=NOW)
