"""The strict DER reader: distinguished-encoding rules and typed refusals only."""

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.attestation import _der
from sanctum.attestation.errors import DerError


def _oid_der(dotted: str) -> bytes:
    # cryptography encodes OIDs correctly; take its DER from a one-attribute name.
    name = x509.Name([x509.NameAttribute(x509.ObjectIdentifier(dotted), "x")])
    der = name.public_bytes()
    start = der.index(b"\x06")
    return der[start : start + 2 + der[start + 1]]


@pytest.mark.parametrize(
    "dotted",
    ["1.2.840.113741.1.13.1", "1.2.840.113741.1.13.1.2.18", "2.5.4.3", "0.9.2342", "2.999.1"],
)
def test_oids_decode(dotted):
    encoded = _oid_der(dotted)
    assert _der.read_oid(encoded, 0, len(encoded)) == dotted


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x06\x00",  # Empty.
        b"\x06\x02\x2a\x86",  # Last byte continues.
        b"\x06\x03\x2a\x80\x01",  # Leading 0x80 in a sub-identifier.
        b"\x04\x01\x2a",  # Wrong tag.
        b"\x06\x01\x2a\x00",  # Trailing byte.
    ],
)
def test_malformed_oids(encoded):
    with pytest.raises(DerError):
        _der.read_oid(encoded, 0, len(encoded))


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        (b"\x02\x01\x00", 0),
        (b"\x02\x01\x7f", 127),
        (b"\x02\x02\x00\xff", 255),
        (b"\x02\x02\x01\x00", 256),
        (b"\x02\x01\xff", -1),
        (b"\x02\x02\xff\x7f", -129),
    ],
)
def test_integers(encoded, value):
    assert _der.read_integer(encoded, 0, len(encoded)) == value


@pytest.mark.parametrize(
    "encoded",
    [b"\x02\x00", b"\x02\x02\x00\x7f", b"\x02\x02\xff\x80", b"\x0a\x01\x01", b"\x02\x01"],
)
def test_malformed_integers(encoded):
    with pytest.raises(DerError):
        _der.read_integer(encoded, 0, len(encoded))


def test_enumerated_by_tag():
    assert _der.read_integer(b"\x0a\x01\x02", 0, 3, _der.TAG_ENUMERATED) == 2


@pytest.mark.parametrize(("encoded", "value"), [(b"\x01\x01\xff", True), (b"\x01\x01\x00", False)])
def test_booleans(encoded, value):
    assert _der.read_boolean(encoded, 0, 3) is value


@pytest.mark.parametrize("encoded", [b"\x01\x01\x01", b"\x01\x00", b"\x01\x02\xff\xff"])
def test_malformed_booleans(encoded):
    with pytest.raises(DerError):
        _der.read_boolean(encoded, 0, len(encoded))


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (b"\x04\x00", (4, 2, 2)),
        (b"\x04\x81\x80" + bytes(128), (4, 3, 131)),
        (b"\x04\x82\x01\x00" + bytes(256), (4, 4, 260)),
    ],
)
def test_lengths(encoded, expected):
    assert _der.read_tlv(encoded, 0, len(encoded)) == expected


@pytest.mark.parametrize(
    "encoded",
    [
        b"",
        b"\x04",
        b"\x04\x80",  # Indefinite.
        b"\x04\x81\x05" + bytes(5),  # Long form for a short length.
        b"\x04\x82\x00\x80" + bytes(128),  # Leading zero length octet.
        b"\x04\x85\x00\x00\x00\x00\x01",  # Too many length octets.
        b"\x04\x02\x00",  # Runs past the end.
        b"\x1f\x01\x00",  # High tag number.
        b"\x04\x84\xff\xff\xff\xff",  # Impossible length.
    ],
)
def test_malformed_lengths(encoded):
    with pytest.raises(DerError):
        _der.read_tlv(encoded, 0, len(encoded))


def test_bounds_beyond_the_buffer_are_clamped():
    with pytest.raises(DerError):
        _der.read_tlv(b"\x04\x05\x00", 0, 100)
    with pytest.raises(DerError):
        _der.read_sequence(b"\x30", 0, 50)
    with pytest.raises(DerError):
        _der.read_tlv(b"\x04\x00", -1, 2)


def test_sequences():
    data = b"\x30\x06\x02\x01\x01\x04\x01\x00"
    assert _der.read_sequence(data) == [(2, 5), (5, 8)]
    assert _der.read_sequence(b"\x30\x00") == []
    with pytest.raises(DerError):
        _der.read_sequence(data + b"\x00")
    with pytest.raises(DerError):
        _der.read_sequence(b"\x31\x00")
    with pytest.raises(DerError):
        _der.read_sequence(b"\x30\x03\x02\x01")


def test_values_must_fill_their_span():
    with pytest.raises(DerError):
        _der.read_value(b"\x04\x01\x00\x00", 0, 4, _der.TAG_OCTET_STRING)
    assert _der.read_value(b"\x04\x01\x07", 0, 3, _der.TAG_OCTET_STRING) == b"\x07"


def _walk(data: bytes, start: int, end: int, depth: int = 0) -> None:
    """Read everything nested in ``data[start:end]`` the way the PCK parser would."""
    position = start
    while position < end:
        tag, value_start, value_end = _der.read_tlv(data, position, end)
        assert start <= value_start <= value_end <= end
        if tag == _der.TAG_SEQUENCE and depth < 8:
            _walk(data, value_start, value_end, depth + 1)
        elif tag == _der.TAG_OID:
            _der.read_oid(data, position, value_end)
        elif tag in (_der.TAG_INTEGER, _der.TAG_ENUMERATED):
            _der.read_integer(data, position, value_end, tag)
        elif tag == _der.TAG_BOOLEAN:
            _der.read_boolean(data, position, value_end)
        position = value_end


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_values_or_der_errors(data):
    try:
        _walk(data, 0, len(data))
    except DerError as error:
        code = error.code
    else:
        return
    assert code == "der.malformed"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**40), min_size=1, max_size=8), st.integers(0, 2), st.data())
def test_oid_round_trip(arcs, first, data):
    second = data.draw(st.integers(0, 39 if first < 2 else 2**20))
    dotted = ".".join(str(arc) for arc in (first, second, *arcs))
    encoded = _oid_der(dotted)
    assert _der.read_oid(encoded, 0, len(encoded)) == dotted
