"""Errors of the launcher, split by whose fault the failure is (see :mod:`sanctum.errors`).

- :class:`LauncherConfigError` (usage): the image or its run-time settings are incomplete
  (no manager URL, no CA pin, no evidence source, an unsupported certificate setting).
- :class:`IntegrityError` (evidence): a trusted file on disk differs from the manifest.
- :class:`AttestationRefusedError` (evidence): the Enclave Manager refused the attestation; its
  ``code`` is the manager's reason code (``attest.build_not_allowlisted``, ...).
- :class:`ManagerUnavailableError` (unavailable): the manager could not be reached or failed;
  the launcher retries these with bounded backoff.
"""

from __future__ import annotations

from sanctum.errors import EvidenceError, UnavailableError, UsageError

__all__ = [
    "AttestationRefusedError",
    "IntegrityError",
    "LauncherConfigError",
    "ManagerUnavailableError",
]


class LauncherConfigError(UsageError):
    """The launcher cannot run as configured (missing URL, pin, platform, bad settings)."""

    default_code = "launcher.config_invalid"


class IntegrityError(EvidenceError):
    """A trusted file is missing or its SHA-256 differs from the signed manifest."""

    default_code = "launcher.trusted_file_mismatch"


class AttestationRefusedError(EvidenceError):
    """The Enclave Manager refused this workload; ``code`` is the manager's reason code."""

    default_code = "attest.refused"


class ManagerUnavailableError(UnavailableError):
    """The Enclave Manager could not be reached or failed; retry later."""

    default_code = "launcher.manager_unavailable"
