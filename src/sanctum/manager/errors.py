"""Errors specific to the manager, and the one mapping of Sanctum errors to HTTP statuses.

Domain code raises :mod:`sanctum.errors` types (never ``HTTPException``); :func:`http_status_for`
is the single place that decides the HTTP status of each, and :mod:`sanctum.manager.problems`
renders them as RFC 9457 problem documents.
"""

from __future__ import annotations

from typing import ClassVar

from sanctum.errors import (
    AuthenticationError,
    ConflictError,
    EvidenceError,
    NotFoundError,
    PermissionDeniedError,
    SanctumError,
    UnavailableError,
    UsageError,
)

__all__ = ["RateLimitedError", "http_status_for"]


class RateLimitedError(AuthenticationError):
    """Too many failed attempts from this identity or address: wait and retry."""

    default_code = "auth.rate_limited"
    http_status: ClassVar[int] = 429

    def __init__(self, message: str, *, retry_after_seconds: int, code: str | None = None) -> None:
        """Create the error with the number of seconds the caller should wait."""
        super().__init__(message, code=code, details={"retry_after_seconds": retry_after_seconds})
        self.retry_after_seconds = retry_after_seconds


# Most specific first: the first matching class decides.
_STATUS_BY_CLASS: tuple[tuple[type[SanctumError], int], ...] = (
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (UsageError, 400),
    (UnavailableError, 503),
    (EvidenceError, 422),
)


def http_status_for(error: SanctumError) -> int:
    """Return the HTTP status of ``error``.

    A class may pin its own status with an ``http_status`` class attribute (for example an
    attestation refusal that must read as 403); otherwise the nearest class in the error tree
    decides, and an unknown ``SanctumError`` is a 500.
    """
    pinned = getattr(type(error), "http_status", None)
    if isinstance(pinned, int):
        return pinned
    for cls, status in _STATUS_BY_CLASS:
        if isinstance(error, cls):
            return status
    return 500
