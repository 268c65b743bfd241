"""Errors of the attestation package: malformed evidence, refused before any cryptography runs.

Every class here is an :class:`~sanctum.errors.EvidenceError`: a quote or certificate that does
not parse is bad input, and retrying with the same bytes gives the same answer. Each raise site
passes a specific dotted code (for example ``quote.truncated``) so operators can tell failures
apart; the class only fixes the family and its default code.
"""

from __future__ import annotations

from sanctum.errors import EvidenceError

__all__ = ["DerError", "PckExtensionError", "QuoteFormatError"]


class QuoteFormatError(EvidenceError):
    """The quote bytes do not follow Intel's DCAP quote layout (or use an unsupported variant).

    Codes used: ``quote.malformed``, ``quote.truncated``, ``quote.unsupported_version``,
    ``quote.unsupported_key_type``, ``quote.unsupported_tee``, ``quote.unsupported_body_type``,
    ``quote.unsupported_certification_type`` and ``quote.pck_chain_missing``.
    """

    default_code = "quote.malformed"


class PckExtensionError(EvidenceError):
    """The PCK certificate's SGX extension (OID 1.2.840.113741.1.13.1) is missing or invalid."""

    default_code = "pck.extension_invalid"


class DerError(EvidenceError):
    """A DER encoding violates the distinguished encoding rules or the expected structure."""

    default_code = "der.malformed"
