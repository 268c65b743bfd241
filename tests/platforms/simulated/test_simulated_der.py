from __future__ import annotations

import pytest

from sanctum.platforms.simulated import _der


def test_integer_encodings_match_intel_certificates() -> None:
    assert _der.integer(0) == bytes.fromhex("020100")
    assert _der.integer(11) == bytes.fromhex("02010b")
    # Intel encodes SVN 255 with a leading zero (positive two's complement).
    assert _der.integer(255) == bytes.fromhex("020200ff")
    assert _der.integer(0x1234) == bytes.fromhex("02021234")
    assert _der.integer(-1) == bytes.fromhex("0201ff")


def test_oid_encoding() -> None:
    assert _der.oid("1.2.840.113741.1.13.1") == bytes.fromhex("06092a864886f84d010d01")
    assert _der.oid("1.2.840.113741.1.13.1.2.17") == bytes.fromhex("060b2a864886f84d010d010211")
    with pytest.raises(ValueError):
        _der.oid("3.1")
    with pytest.raises(ValueError):
        _der.oid("1")


def test_long_form_length_and_simple_types() -> None:
    content = bytes(200)
    encoded = _der.octet_string(content)
    assert encoded[:3] == bytes.fromhex("0481c8")
    assert encoded[3:] == content
    assert _der.octet_string(bytes(300))[:4] == bytes.fromhex("0482012c")
    assert _der.boolean(True) == bytes.fromhex("0101ff")
    assert _der.boolean(False) == bytes.fromhex("010100")
    assert _der.enumerated(1) == bytes.fromhex("0a0101")
    assert _der.sequence([_der.integer(1), _der.integer(2)]) == bytes.fromhex("3006020101020102")
