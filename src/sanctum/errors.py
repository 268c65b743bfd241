"""The single error tree of Sanctum.

Every error Sanctum raises on purpose derives from :class:`SanctumError`. Errors are split by
*whose fault* the failure is, because callers must react differently:

- :class:`EvidenceError`: the input (a quote, collateral, a request, a file) is bad or does not
  satisfy policy. The answer is to **refuse**; retrying the same input gives the same answer.
- :class:`UnavailableError`: Sanctum **could not check** (a collateral service is down, the
  database is unreachable). The input may be fine; the answer is to **retry** later.
- :class:`UsageError`: the caller asked for something that cannot be done as asked (a missing
  file, a bad option, an unknown object, a forbidden action).

Each error carries a stable dotted ``code`` (for example ``quote.signature_invalid``) that
operators, scripts and the HTTP API rely on, and an operator-facing ``message``. Codes never
change meaning once released; new failure modes get new codes. The mapping of errors to HTTP
status codes lives in one place (the manager's error handler), keyed on these classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "EvidenceError",
    "NotFoundError",
    "PermissionDeniedError",
    "SanctumError",
    "UnavailableError",
    "UsageError",
]

_CODE_ALPHABET: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.")


def _check_code(code: str) -> str:
    """Return ``code`` if it is a well-formed dotted code, else raise ``ValueError``.

    A dotted code is lowercase ``family.reason`` (two or more parts, each non-empty).

    Raises:
        ValueError: ``code`` is not a dotted code; this is a programming error.
    """
    parts = code.split(".")
    if len(parts) < 2 or not all(parts) or not set(code) <= _CODE_ALPHABET:
        msg = f"error code {code!r} is not a lowercase dotted code such as 'quote.malformed'"
        raise ValueError(msg)
    return code


class SanctumError(Exception):
    """Root of every error Sanctum raises on purpose.

    Attributes:
        code: Stable dotted identifier of the failure, for example ``pck.revoked``.
        message: What happened, written for an operator.
        hint: Optional advice on what to do about it.
        details: Optional structured facts (JSON-serialisable, never secrets).
    """

    default_code: ClassVar[str] = "sanctum.error"
    #: Whether retrying the same operation later may succeed.
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        hint: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        """Create an error with an operator-facing ``message`` and a dotted ``code``.

        Raises:
            ValueError: ``code`` is not a dotted code (a programming error).
        """
        super().__init__(message)
        self.code: str = _check_code(code or self.default_code)
        self.message: str = message
        self.hint: str | None = hint
        self.details: Mapping[str, object] = dict(details or {})

    def __str__(self) -> str:
        """Return ``code: message``, the one-line form used in logs and the CLI."""
        return f"{self.code}: {self.message}"

    def diagnostics(self) -> str:
        """Return a human-readable explanation, with the hint when there is one."""
        text = f"{self.message} [{self.code}]"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        """Return the JSON form used by ``--json`` output and API problem documents."""
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = dict(self.details)
        return out


class EvidenceError(SanctumError):
    """The evidence or input is bad, or fails policy: refuse it; retrying will not help."""

    default_code = "evidence.invalid"


class UnavailableError(SanctumError):
    """Something needed to decide could not be reached or read: retry later."""

    default_code = "service.unavailable"
    retryable = True


class UsageError(SanctumError):
    """The request cannot be carried out as asked (bad option, missing file, wrong state)."""

    default_code = "usage.invalid"


class NotFoundError(UsageError):
    """The named object does not exist (or the caller may not know that it does)."""

    default_code = "usage.not_found"


class ConflictError(UsageError):
    """The request conflicts with the current state (a duplicate, a closed task, a race lost)."""

    default_code = "usage.conflict"


class AuthenticationError(UsageError):
    """The caller could not be authenticated (no, expired or revoked credentials)."""

    default_code = "auth.unauthenticated"


class PermissionDeniedError(UsageError):
    """The caller is authenticated but its role does not allow the action."""

    default_code = "auth.forbidden"
