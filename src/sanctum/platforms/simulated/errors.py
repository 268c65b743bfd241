"""Errors specific to the simulated platform and its persisted simulation PKI."""

from __future__ import annotations

from sanctum.errors import UsageError

__all__ = ["SimulationPkiError"]


class SimulationPkiError(UsageError):
    """The stored simulation PKI cannot be used (malformed, wrong key, unsafe permissions).

    Codes: ``simulation_pki.malformed``, ``simulation_pki.unwrap_failed``,
    ``simulation_pki.insecure_permissions``.
    """

    default_code = "simulation_pki.malformed"
