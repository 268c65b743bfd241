from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from sanctum.protocol.binding import check_binding, report_data_for, spki_der
from sanctum.protocol.errors import BindingError

NONCE = bytes(range(32))


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_report_data_layout(key: ec.EllipticCurvePrivateKey) -> None:
    der = spki_der(key.public_key())
    data = report_data_for(NONCE, der)
    assert len(data) == 64
    expected = hashlib.sha256(NONCE + hashlib.sha256(der).digest()).digest()
    assert data[:32] == expected
    assert data[32:] == bytes(32)


def test_known_answer() -> None:
    # Independent computation: SHA-256("n" || SHA-256("k")).
    inner = bytes.fromhex("8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a")
    assert hashlib.sha256(b"k").digest() == inner
    assert report_data_for(b"n", b"k")[:32] == hashlib.sha256(b"n" + inner).digest()


def test_spki_of_csr_matches_spki_of_key(key: ec.EllipticCurvePrivateKey) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "w")]))
        .sign(key, hashes.SHA256())
    )
    assert spki_der(csr.public_key()) == spki_der(key.public_key())


def test_check_accepts_the_matching_binding(key: ec.EllipticCurvePrivateKey) -> None:
    der = spki_der(key.public_key())
    check_binding(report_data_for(NONCE, der), NONCE, der)


def test_other_key_other_nonce_and_dirty_tail_are_refused(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    der = spki_der(key.public_key())
    other = spki_der(ec.generate_private_key(ec.SECP256R1()).public_key())
    good = report_data_for(NONCE, der)
    cases = [
        (good, NONCE, other),  # a swapped CSR
        (good, bytes(32), der),  # a replayed quote for another nonce
        (good[:32] + b"\x01" + bytes(31), NONCE, der),  # extra data in the second half
        (good[:32], NONCE, der),  # wrong size
        (good + b"\x00", NONCE, der),
    ]
    for report_data, nonce, spki in cases:
        with pytest.raises(BindingError) as caught:
            check_binding(report_data, nonce, spki)
        assert caught.value.code == "attest.binding_mismatch"


def test_empty_inputs_are_refused() -> None:
    with pytest.raises(BindingError):
        report_data_for(b"", b"k")
    with pytest.raises(BindingError):
        report_data_for(b"n", b"")


@given(nonce=st.binary(min_size=1, max_size=64), flip=st.integers(min_value=0, max_value=511))
def test_any_bit_flip_is_refused(nonce: bytes, flip: int) -> None:
    data = bytearray(report_data_for(nonce, b"spki"))
    check_binding(bytes(data), nonce, b"spki")
    data[flip // 8] ^= 1 << (flip % 8)
    with pytest.raises(BindingError):
        check_binding(bytes(data), nonce, b"spki")
