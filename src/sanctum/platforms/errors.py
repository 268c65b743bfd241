"""Errors raised by the evidence and collateral sources.

They specialise the project-wide tree of :mod:`sanctum.errors` so callers can tell apart "this
machine cannot attest right now" (:class:`PlatformUnavailableError`, retry or use another
platform), "this platform is set up in a way we cannot use" (:class:`PlatformConfigurationError`,
fix the configuration) and "Intel's collateral could not be obtained"
(:class:`CollateralUnavailableError`, retry later).
"""

from __future__ import annotations

from sanctum.errors import UnavailableError, UsageError

__all__ = [
    "CollateralUnavailableError",
    "PlatformConfigurationError",
    "PlatformUnavailableError",
]


class PlatformUnavailableError(UnavailableError):
    """The platform could not produce evidence (device missing, I/O failed, a writer raced us)."""

    default_code = "platform.unavailable"


class PlatformConfigurationError(UsageError):
    """The platform exists but is configured in a way that cannot produce DCAP evidence."""

    default_code = "platform.misconfigured"


class CollateralUnavailableError(UnavailableError):
    """Intel's collateral could not be obtained (service down, HTTP error, cache expired)."""

    default_code = "collateral.unreachable"
