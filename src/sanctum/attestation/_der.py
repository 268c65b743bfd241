"""A minimal, strict DER reader for the few ASN.1 shapes attestation evidence needs.

``cryptography`` parses certificates but hands Intel's SGX extension over as opaque bytes. This
reader covers exactly what that extension uses (SEQUENCE, OBJECT IDENTIFIER, OCTET STRING,
INTEGER, ENUMERATED, BOOLEAN) and enforces the distinguished encoding rules on it: low tag
numbers only, definite minimal lengths, minimal integers, BOOLEAN as 0x00/0xFF, and no bytes
left over anywhere. Every violation raises :class:`~sanctum.attestation.errors.DerError`; the
reader never raises ``IndexError`` or ``ValueError``.
"""

from __future__ import annotations

from typing import Final

from sanctum.attestation.errors import DerError

__all__ = [
    "TAG_BOOLEAN",
    "TAG_ENUMERATED",
    "TAG_INTEGER",
    "TAG_OCTET_STRING",
    "TAG_OID",
    "TAG_SEQUENCE",
    "read_boolean",
    "read_integer",
    "read_oid",
    "read_sequence",
    "read_tlv",
    "read_value",
]

TAG_BOOLEAN: Final = 0x01
TAG_INTEGER: Final = 0x02
TAG_OCTET_STRING: Final = 0x04
TAG_OID: Final = 0x06
TAG_ENUMERATED: Final = 0x0A
TAG_SEQUENCE: Final = 0x30

# Lengths above 2**32 - 1 cannot describe anything an X.509 extension holds.
_MAX_LENGTH_OCTETS: Final = 4
_TAG_NAMES: Final = {
    TAG_BOOLEAN: "BOOLEAN",
    TAG_INTEGER: "INTEGER",
    TAG_OCTET_STRING: "OCTET STRING",
    TAG_OID: "OBJECT IDENTIFIER",
    TAG_ENUMERATED: "ENUMERATED",
    TAG_SEQUENCE: "SEQUENCE",
}


def _tag_name(tag: int) -> str:
    """Return a readable name of ``tag`` for error messages."""
    return _TAG_NAMES.get(tag, f"tag {tag:#04x}")


def read_tlv(data: bytes, position: int, end: int) -> tuple[int, int, int]:
    """Read one DER tag-length-value in ``data[position:end]``.

    Args:
        data: The buffer.
        position: Offset of the tag byte.
        end: Offset the element must not run past.

    Returns:
        ``(tag, value_start, value_end)``.

    Raises:
        DerError: The element is truncated, uses a high tag number, an indefinite or non-minimal
            length, or runs past ``end``.
    """
    end = min(end, len(data))
    if position < 0 or position + 2 > end:
        raise DerError(f"DER element at offset {position} is truncated")
    tag = data[position]
    if tag & 0x1F == 0x1F:
        raise DerError(f"DER element at offset {position} uses a high tag number")
    first = data[position + 1]
    position += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise DerError(f"DER element at offset {position - 2} has an indefinite length")
        if count > _MAX_LENGTH_OCTETS or position + count > end:
            raise DerError(f"DER element at offset {position - 2} has an impossible length")
        length = int.from_bytes(data[position : position + count], "big")
        if length < 0x80 or data[position] == 0:
            raise DerError(f"DER element at offset {position - 2} has a non-minimal length")
        position += count
    if position + length > end:
        raise DerError(
            f"DER {_tag_name(tag)} at offset {position} declares {length} bytes, "
            f"only {max(end - position, 0)} remain"
        )
    return tag, position, position + length


def _expect(data: bytes, position: int, end: int, tag: int) -> tuple[int, int]:
    """Read an element that must have ``tag``; return its value bounds.

    Raises:
        DerError: The element is malformed or has another tag.
    """
    found, start, stop = read_tlv(data, position, end)
    if found != tag:
        raise DerError(
            f"expected DER {_tag_name(tag)} at offset {position}, found {_tag_name(found)}"
        )
    return start, stop


def read_sequence(data: bytes, position: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Read a SEQUENCE that must fill ``data[position:end]`` exactly; list its elements.

    Returns:
        The ``(start, end)`` offsets of each element's full encoding (tag included).

    Raises:
        DerError: Not a SEQUENCE, malformed, or bytes left over after it.
    """
    limit = len(data) if end is None else end
    if (
        position >= 0
        and position + 2 <= limit <= len(data)
        and data[position] == TAG_SEQUENCE
        and data[position + 1] < 0x80
        and position + 2 + data[position + 1] == limit
    ):
        # Fast path: a short-form SEQUENCE filling the range, as the generic checks require.
        start, stop = position + 2, limit
    else:
        start, stop = _expect(data, position, limit, TAG_SEQUENCE)
        if stop != limit:
            raise DerError(f"{limit - stop} bytes follow the DER SEQUENCE at offset {position}")
    elements: list[tuple[int, int]] = []
    while start < stop:
        # Fast path for the common short-form element (the same checks as `read_tlv`, which
        # handles everything else and raises the errors): `stop` never exceeds `len(data)`.
        if start + 2 <= stop:
            first = data[start + 1]
            element_end = start + 2 + first
            if first < 0x80 and data[start] & 0x1F != 0x1F and element_end <= stop:
                elements.append((start, element_end))
                start = element_end
                continue
        _, _, element_end = read_tlv(data, start, stop)
        elements.append((start, element_end))
        start = element_end
    return elements


def read_value(data: bytes, position: int, end: int, tag: int) -> bytes:
    """Return the value of the element with ``tag`` that fills ``data[position:end]`` exactly.

    Raises:
        DerError: Another tag, malformed, or bytes left over.
    """
    # Fast path: a short-form element with ``tag`` that fills the range exactly is what the
    # generic checks below accept, with the same value.
    if (
        position >= 0
        and position + 2 <= end <= len(data)
        and data[position] == tag
        and data[position + 1] < 0x80
        and position + 2 + data[position + 1] == end
    ):
        return data[position + 2 : end]
    start, stop = _expect(data, position, end, tag)
    if stop != end:
        raise DerError(f"{end - stop} bytes follow the DER {_tag_name(tag)} at offset {position}")
    return data[start:stop]


def read_oid(data: bytes, position: int, end: int) -> str:
    """Return the dotted form of the OBJECT IDENTIFIER filling ``data[position:end]``.

    Raises:
        DerError: Not a minimal, complete OBJECT IDENTIFIER.
    """
    value = read_value(data, position, end, TAG_OID)
    if not value or value[-1] & 0x80:
        raise DerError(f"DER OBJECT IDENTIFIER at offset {position} is empty or unterminated")
    arcs: list[int] = []
    current = 0
    fresh = True
    for byte in value:
        if fresh and byte == 0x80:
            raise DerError(f"DER OBJECT IDENTIFIER at offset {position} is not minimal")
        current = (current << 7) | (byte & 0x7F)
        fresh = not byte & 0x80
        if fresh:
            arcs.append(current)
            current = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(arc) for arc in (*head, *arcs[1:]))


def read_integer(data: bytes, position: int, end: int, tag: int = TAG_INTEGER) -> int:
    """Return the INTEGER (or ENUMERATED, by ``tag``) filling ``data[position:end]``.

    Raises:
        DerError: Empty or non-minimal encoding, or another tag.
    """
    value = read_value(data, position, end, tag)
    if not value:
        raise DerError(f"DER {_tag_name(tag)} at offset {position} is empty")
    if len(value) > 1 and (
        (value[0] == 0x00 and not value[1] & 0x80) or (value[0] == 0xFF and value[1] & 0x80)
    ):
        raise DerError(f"DER {_tag_name(tag)} at offset {position} is not minimal")
    return int.from_bytes(value, "big", signed=True)


def read_boolean(data: bytes, position: int, end: int) -> bool:
    """Return the BOOLEAN filling ``data[position:end]`` (DER: 0x00 false, 0xFF true).

    Raises:
        DerError: Not a one-byte 0x00/0xFF BOOLEAN.
    """
    value = read_value(data, position, end, TAG_BOOLEAN)
    if value == b"\xff":
        return True
    if value == b"\x00":
        return False
    raise DerError(f"DER BOOLEAN at offset {position} is not 0x00 or 0xFF")
