"""Errors of the attestation protocol (binding, sealing, wire messages).

Every error here is an :class:`~sanctum.errors.EvidenceError`: the bytes presented do not
match what the protocol requires, so the right answer is to refuse, and retrying the same input
gives the same answer.
"""

from __future__ import annotations

from sanctum.errors import EvidenceError

__all__ = ["BindingError", "SealingError"]


class BindingError(EvidenceError):
    """The quote's report data does not bind the challenge nonce and the workload's key."""

    default_code = "attest.binding_mismatch"


class SealingError(EvidenceError):
    """A sealed box cannot be made or opened (wrong key, tampering, unsupported key type)."""

    default_code = "sealing.invalid"
