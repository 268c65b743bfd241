"""A tiny DER encoder for the Intel SGX certificate extension of simulated PCK certificates.

``cryptography`` can put an arbitrary extension into a certificate, but it cannot encode the
contents of Intel's SGX extension (OID ``1.2.840.113741.1.13.1``): a SEQUENCE of
``SEQUENCE { OID, value }`` pairs. This module encodes exactly the handful of ASN.1 types that
extension needs (SEQUENCE, OBJECT IDENTIFIER, OCTET STRING, INTEGER, ENUMERATED, BOOLEAN) in
definite-length DER, the way Intel's real PCK certificates encode them.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "boolean",
    "enumerated",
    "integer",
    "octet_string",
    "oid",
    "sequence",
]

_TAG_BOOLEAN = 0x01
_TAG_INTEGER = 0x02
_TAG_OCTET_STRING = 0x04
_TAG_OID = 0x06
_TAG_ENUMERATED = 0x0A
_TAG_SEQUENCE = 0x30


def _length(size: int) -> bytes:
    """Return the DER length octets for a value of ``size`` bytes."""
    if size < 0x80:
        return bytes([size])
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, value: bytes) -> bytes:
    """Return one DER element: tag, length, value."""
    return bytes([tag]) + _length(len(value)) + value


def _base128(value: int) -> bytes:
    """Return ``value`` in the base-128 form used by OBJECT IDENTIFIER arcs."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def oid(dotted: str) -> bytes:
    """Encode an OBJECT IDENTIFIER given in dotted form, for example ``1.2.840.113741.1.13.1``.

    Raises:
        ValueError: ``dotted`` is not a valid object identifier.
    """
    arcs = [int(part) for part in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        msg = f"{dotted!r} is not an object identifier"
        raise ValueError(msg)
    body = _base128(40 * arcs[0] + arcs[1]) + b"".join(_base128(arc) for arc in arcs[2:])
    return _tlv(_TAG_OID, body)


def _signed_content(value: int) -> bytes:
    """Return the minimal two's-complement big-endian octets of ``value``."""
    size = max(1, (value.bit_length() + 8) // 8)
    return value.to_bytes(size, "big", signed=True)


def integer(value: int) -> bytes:
    """Encode an INTEGER (255 becomes ``02 02 00 ff``, as in Intel's certificates)."""
    return _tlv(_TAG_INTEGER, _signed_content(value))


def enumerated(value: int) -> bytes:
    """Encode an ENUMERATED value."""
    return _tlv(_TAG_ENUMERATED, _signed_content(value))


def boolean(value: bool) -> bytes:
    """Encode a BOOLEAN (DER requires ``ff`` for true)."""
    return _tlv(_TAG_BOOLEAN, b"\xff" if value else b"\x00")


def octet_string(value: bytes) -> bytes:
    """Encode an OCTET STRING."""
    return _tlv(_TAG_OCTET_STRING, value)


def sequence(items: Iterable[bytes]) -> bytes:
    """Encode a SEQUENCE of already-encoded elements."""
    return _tlv(_TAG_SEQUENCE, b"".join(items))
