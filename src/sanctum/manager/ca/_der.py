"""A minimal, strict DER writer and reader for the attestation extension.

Only the universal types the extension uses are supported: SEQUENCE, INTEGER (non-negative),
OCTET STRING, UTF8String and BOOLEAN. The reader accepts DER only (definite minimal lengths,
minimal integers, booleans 0x00 or 0xFF, no trailing bytes), because a certificate extension that
parses two ways is a security bug.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sanctum.errors import EvidenceError

TAG_BOOLEAN: Final = 0x01
TAG_INTEGER: Final = 0x02
TAG_OCTET_STRING: Final = 0x04
TAG_UTF8_STRING: Final = 0x0C
TAG_SEQUENCE: Final = 0x30

_CODE: Final = "ca.extension_malformed"


def _length(size: int) -> bytes:
    """Return the DER length octets for ``size``."""
    if size < 0x80:
        return bytes([size])
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    """Return one DER element."""
    return bytes([tag]) + _length(len(value)) + value


def integer(value: int) -> bytes:
    """Return a DER INTEGER for a non-negative ``value``.

    Raises:
        ValueError: ``value`` is negative (a programming error).
    """
    if value < 0:
        msg = "only non-negative integers are encoded"
        raise ValueError(msg)
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return tlv(TAG_INTEGER, body)


def boolean(value: bool) -> bytes:
    """Return a DER BOOLEAN."""
    return tlv(TAG_BOOLEAN, b"\xff" if value else b"\x00")


def octet_string(value: bytes) -> bytes:
    """Return a DER OCTET STRING."""
    return tlv(TAG_OCTET_STRING, value)


def utf8_string(value: str) -> bytes:
    """Return a DER UTF8String."""
    return tlv(TAG_UTF8_STRING, value.encode("utf-8"))


def sequence(*elements: bytes) -> bytes:
    """Return a DER SEQUENCE of already-encoded ``elements``."""
    return tlv(TAG_SEQUENCE, b"".join(elements))


@dataclass
class Reader:
    """A cursor over DER bytes that reads one element at a time.

    Attributes:
        data: The bytes being read.
        offset: The position of the next element.
    """

    data: bytes
    offset: int = 0

    def _fail(self, what: str) -> EvidenceError:
        """Return the error for malformed input at the cursor."""
        return EvidenceError(
            f"attestation extension is not valid DER: {what} at byte {self.offset}", code=_CODE
        )

    def element(self, tag: int) -> bytes:
        """Read one element with ``tag`` and return its value bytes.

        Raises:
            EvidenceError: The next element is missing, has another tag or a non-DER length
                (code ``ca.extension_malformed``).
        """
        data, pos = self.data, self.offset
        if pos + 2 > len(data):
            raise self._fail("truncated element")
        if data[pos] != tag:
            raise self._fail(f"expected tag 0x{tag:02x}, found 0x{data[pos]:02x}")
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            size = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4 or pos + count > len(data):
                raise self._fail("unsupported length form")
            size = int.from_bytes(data[pos : pos + count], "big")
            if size < 0x80 or data[pos] == 0:
                raise self._fail("non-minimal length")
            pos += count
        if pos + size > len(data):
            raise self._fail("length beyond end of data")
        self.offset = pos + size
        return data[pos : pos + size]

    def integer(self) -> int:
        """Read a non-negative DER INTEGER.

        Raises:
            EvidenceError: Not a minimal non-negative INTEGER (code ``ca.extension_malformed``).
        """
        body = self.element(TAG_INTEGER)
        if not body or body[0] & 0x80:
            raise self._fail("empty or negative INTEGER")
        if len(body) > 1 and body[0] == 0 and not body[1] & 0x80:
            raise self._fail("non-minimal INTEGER")
        return int.from_bytes(body, "big")

    def boolean(self) -> bool:
        """Read a DER BOOLEAN.

        Raises:
            EvidenceError: Not a DER BOOLEAN (code ``ca.extension_malformed``).
        """
        body = self.element(TAG_BOOLEAN)
        if body not in {b"\x00", b"\xff"}:
            raise self._fail("BOOLEAN is not 0x00 or 0xFF")
        return body == b"\xff"

    def octet_string(self) -> bytes:
        """Read a DER OCTET STRING.

        Raises:
            EvidenceError: The next element is not an OCTET STRING.
        """
        return self.element(TAG_OCTET_STRING)

    def utf8_string(self) -> str:
        """Read a DER UTF8String.

        Raises:
            EvidenceError: The next element is not a valid UTF8String.
        """
        body = self.element(TAG_UTF8_STRING)
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._fail("UTF8String is not UTF-8") from exc

    def sequence(self) -> Reader:
        """Read a SEQUENCE and return a reader over its contents.

        Raises:
            EvidenceError: The next element is not a SEQUENCE.
        """
        return Reader(self.element(TAG_SEQUENCE))

    def at_end(self) -> bool:
        """Return whether every byte has been read."""
        return self.offset == len(self.data)

    def finish(self) -> None:
        """Check that every byte has been read.

        Raises:
            EvidenceError: Bytes remain (code ``ca.extension_malformed``).
        """
        if not self.at_end():
            raise self._fail("trailing bytes")
