"""Errors of the encrypted directories (:mod:`sanctum.encfs`).

Integrity failures are :class:`EncfsIntegrityError` (an :class:`~sanctum.errors.EvidenceError`:
the ciphertext on the host was changed, replaced, cut, extended or rolled back; refuse it). A key
that does not open the directory is :class:`WrongKeyError`. Asking for something the directory
cannot do (a missing name, a name that exists, a directory where a file is expected) is an
:class:`EncfsUsageError`; a failing host file system is :class:`EncfsIOError` (retryable).

Every error carries the ``errno`` the FUSE layer returns to the application: integrity failures
become ``EIO`` so the application sees an I/O error, never silent garbage.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping
from typing import ClassVar, Final

from sanctum.errors import EvidenceError, UnavailableError, UsageError

__all__ = [
    "EncfsError",
    "EncfsFormatError",
    "EncfsIOError",
    "EncfsIntegrityError",
    "EncfsUsageError",
    "WrongKeyError",
    "integrity_failure",
]

_log = logging.getLogger("sanctum.encfs.audit")

#: The ``errno`` of each usage code, for the FUSE layer.
_USAGE_ERRNO: Final[Mapping[str, int]] = {
    "encfs.not_found": errno.ENOENT,
    "encfs.exists": errno.EEXIST,
    "encfs.is_directory": errno.EISDIR,
    "encfs.not_directory": errno.ENOTDIR,
    "encfs.not_empty": errno.ENOTEMPTY,
    "encfs.invalid_path": errno.EINVAL,
    "encfs.invalid_argument": errno.EINVAL,
    "encfs.closed": errno.EBADF,
}


class EncfsError(Exception):
    """Mixin giving every encrypted-directory error the ``errno`` FUSE reports."""

    errno_value: ClassVar[int] = errno.EIO


class EncfsIntegrityError(EncfsError, EvidenceError):
    """The host copy of the directory was tampered with; nothing from it is returned.

    Codes: ``encfs.tampered`` (a chunk, a file record or the index does not authenticate, or a
    file was replaced by another), ``encfs.truncated``, ``encfs.extended``, ``encfs.rollback``
    (an older version of a file or of the index), ``encfs.missing`` (a file of the index is gone).
    """

    default_code = "encfs.tampered"


class WrongKeyError(EncfsError, EvidenceError):
    """The key given does not open this directory (or its header was altered)."""

    default_code = "encfs.wrong_key"
    errno_value = errno.EACCES


class EncfsFormatError(EncfsError, EvidenceError):
    """The host directory is not an encrypted directory of a format version this code reads."""

    default_code = "encfs.format_unsupported"


class EncfsUsageError(EncfsError, UsageError):
    """The operation cannot be done as asked (missing or existing name, wrong kind of entry)."""

    default_code = "encfs.invalid_argument"

    @property
    def errno_code(self) -> int:
        """Return the ``errno`` matching this error's code."""
        return _USAGE_ERRNO.get(self.code, errno.EINVAL)


class EncfsIOError(EncfsError, UnavailableError):
    """The host file system failed (disk full, permission, I/O error): retry or fix the host."""

    default_code = "encfs.io_failed"


def integrity_failure(
    code: str, message: str, *, host_dir: str, facts: Mapping[str, object] | None = None
) -> EncfsIntegrityError:
    """Log an audit-worthy line for a detected integrity failure and return its error.

    The log record carries ``event="encfs.integrity_failure"``, ``audit=True``, the code, the
    host directory and the facts (file ids, chunk indexes, generations; never plaintext or keys),
    so log collectors can alert on it.

    Args:
        code: The dotted code, for example ``encfs.rollback``.
        message: What was detected, for an operator.
        host_dir: The host directory holding the ciphertext.
        facts: Structured facts about the detection.

    Returns:
        The error to raise.
    """
    details = {"host_dir": host_dir, **(facts or {})}
    _log.error(
        "encrypted directory integrity failure: %s [%s]",
        message,
        code,
        extra={
            "event": "encfs.integrity_failure",
            "audit": True,
            "code": code,
            **{f"encfs_{key}": value for key, value in details.items()},
        },
    )
    return EncfsIntegrityError(
        message,
        code=code,
        hint="the host copy was modified outside the enclave; restore it from a trusted backup",
        details=details,
    )
