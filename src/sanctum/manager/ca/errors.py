"""Errors of the manager's certificate authority."""

from __future__ import annotations

from sanctum.errors import EvidenceError

__all__ = ["CsrError"]


class CsrError(EvidenceError):
    """A certificate signing request cannot be honoured (bad signature, key type or names)."""

    default_code = "ca.csr_invalid"
