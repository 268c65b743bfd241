"""Fixtures of the launcher tests (defined in :mod:`launcher_fixtures`)."""

from __future__ import annotations

from launcher_fixtures import fake_manager, sim_qe

__all__ = ["fake_manager", "sim_qe"]
