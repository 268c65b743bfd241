"""Binding of a challenge nonce and the workload's public key into a quote's report data.

A quote proves what code runs; it does not by itself say *which key* that code holds, nor that
it was produced *now*. The workload therefore puts a digest of both into the 64-byte report-data
field of its quote::

    report_data = SHA-256(nonce || SHA-256(SubjectPublicKeyInfo DER)) || 32 zero bytes

The manager recomputes the value from the nonce it issued and the public key of the CSR it
received, and compares all 64 bytes. A CSR swapped for another key, a replayed quote made for
another nonce, or a quote whose second half carries anything else fails the comparison.

The public key is hashed in its DER ``SubjectPublicKeyInfo`` form because that encoding is
canonical and identical in the CSR, the issued certificate and any TLS handshake.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from sanctum.protocol.errors import BindingError

__all__ = [
    "BINDING_SIZE",
    "REPORT_DATA_SIZE",
    "check_binding",
    "report_data_for",
    "spki_der",
]

#: Size of the report-data field of SGX and TDX quotes.
REPORT_DATA_SIZE: Final = 64

#: Number of leading report-data bytes that carry the binding digest; the rest must be zero.
BINDING_SIZE: Final = 32


def spki_der(public_key: PublicKeyTypes) -> bytes:
    """Return the DER ``SubjectPublicKeyInfo`` encoding of ``public_key``.

    Args:
        public_key: Any public key object of ``cryptography``.

    Returns:
        The canonical DER bytes that :func:`report_data_for` hashes.
    """
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def report_data_for(nonce: bytes, spki_der: bytes) -> bytes:
    """Return the 64 bytes of report data that bind ``nonce`` to the key ``spki_der``.

    Args:
        nonce: The single-use challenge nonce the manager issued (raw bytes, not base64).
        spki_der: DER ``SubjectPublicKeyInfo`` of the workload's key (see :func:`spki_der`).

    Returns:
        ``SHA-256(nonce || SHA-256(spki_der))`` followed by 32 zero bytes.

    Raises:
        BindingError: ``nonce`` or ``spki_der`` is empty (code ``attest.binding_mismatch``).
    """
    if not nonce:
        raise BindingError("the challenge nonce is empty; a binding needs the issued nonce")
    if not spki_der:
        raise BindingError("the public key is empty; a binding needs the workload's key")
    key_digest = hashlib.sha256(spki_der).digest()
    digest = hashlib.sha256(nonce + key_digest).digest()
    return digest + bytes(REPORT_DATA_SIZE - BINDING_SIZE)


def check_binding(report_data: bytes, nonce: bytes, spki_der: bytes) -> None:
    """Check that ``report_data`` binds exactly ``nonce`` and the key ``spki_der``.

    All 64 bytes are compared in constant time, so the second half must be zero as well.

    Args:
        report_data: The report-data field of the verified quote (64 bytes).
        nonce: The nonce the manager issued for this attestation.
        spki_der: DER ``SubjectPublicKeyInfo`` of the key in the workload's CSR.

    Raises:
        BindingError: The report data has the wrong size or does not match (code
            ``attest.binding_mismatch``).
    """
    if len(report_data) != REPORT_DATA_SIZE:
        raise BindingError(
            f"report data is {len(report_data)} bytes; quotes carry {REPORT_DATA_SIZE}",
            details={"size": len(report_data)},
        )
    expected = report_data_for(nonce, spki_der)
    if not hmac.compare_digest(report_data, expected):
        raise BindingError(
            "the quote's report data does not bind this nonce and this CSR key",
            hint=(
                "the workload must put SHA-256(nonce || SHA-256(SPKI DER)) in the first 32 bytes"
                " of report data, using the nonce of this challenge and the key of this CSR"
            ),
        )
