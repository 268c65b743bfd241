from __future__ import annotations

from datetime import timedelta

import pytest
from ca_helpers import (  # noqa: F401 (importing these registers the fixtures)
    NOW,
    account_ca_fixture,
    make_csr,
    p256_key_fixture,
    sgx_claims,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from sanctum.errors import EvidenceError
from sanctum.manager.ca import (
    ATTESTATION_EXTENSION_OID,
    AccountCa,
    AttestationClaims,
    _der,
    decode_attestation_claims,
    encode_attestation_claims,
    issue_workload_certificate,
    read_attestation_extension,
)


def test_known_encoding() -> None:
    claims = AttestationClaims(
        tee="sgx",
        measurement=b"\x11" * 32,
        signer=b"\x22" * 32,
        isvprodid=1,
        isvsvn=256,
        tcb_status="UpToDate",
        advisory_ids=("INTEL-SA-00334",),
        debug=False,
        simulated=True,
    )
    expected = (
        "3075"
        "020101"
        "0c03736778"
        "0420" + "11" * 32 + "0420" + "22" * 32 + "020101"
        "02020100"
        "0c08" + b"UpToDate".hex() + "3010"
        "0c0e" + b"INTEL-SA-00334".hex() + "010100"
        "0101ff"
    )
    assert encode_attestation_claims(claims).hex() == expected
    assert decode_attestation_claims(bytes.fromhex(expected)) == claims


def test_advisories_are_sorted_and_unique() -> None:
    claims = sgx_claims(advisory_ids=("B", "A", "B"))
    assert claims.advisory_ids == ("A", "B")


def test_tdx_claims_round_trip() -> None:
    claims = AttestationClaims(
        tee="tdx",
        measurement=b"\x01" * 48,
        signer=b"",
        isvprodid=0,
        isvsvn=0,
        tcb_status="OutOfDate",
        advisory_ids=(),
        debug=True,
        simulated=False,
    )
    assert decode_attestation_claims(encode_attestation_claims(claims)) == claims


@pytest.mark.parametrize(
    "overrides",
    [
        {"tee": "sev"},
        {"measurement": b"\x00" * 48},
        {"signer": b"\x00" * 31},
        {"isvprodid": 65536},
        {"isvsvn": -1},
        {"tcb_status": ""},
    ],
)
def test_invalid_claims_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(EvidenceError) as caught:
        sgx_claims(**overrides)
    assert caught.value.code == "ca.claims_invalid"


def _good() -> bytes:
    return encode_attestation_claims(sgx_claims(advisory_ids=()))  # short form length


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: d + b"\x00", "ca.extension_malformed"),  # trailing bytes
        (lambda d: d[:-1], "ca.extension_malformed"),  # truncated
        (lambda d: b"\x31" + d[1:], "ca.extension_malformed"),  # SET, not SEQUENCE
        (lambda d: d[:2] + b"\x02\x01\x02" + d[5:], "ca.extension_version"),
        (lambda d: d[:2] + b"\x02\x01\xff" + d[5:], "ca.extension_malformed"),  # negative
        (lambda d: d[:-1] + b"\x01", "ca.extension_malformed"),  # BOOLEAN 0x01 is BER
        (lambda d: b"\x30\x81" + d[1:], "ca.extension_malformed"),  # non-minimal length
    ],
)
def test_decoder_is_strict(mutate, code: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EvidenceError) as caught:
        decode_attestation_claims(mutate(_good()))
    assert caught.value.code == code


def test_decoder_refuses_non_minimal_integer_and_unsorted_advisories() -> None:
    body = [
        _der.integer(1),
        _der.utf8_string("sgx"),
        _der.octet_string(b"\x00" * 32),
        _der.octet_string(b"\x00" * 32),
        _der.tlv(_der.TAG_INTEGER, b"\x00\x05"),
        _der.integer(1),
        _der.utf8_string("UpToDate"),
        _der.sequence(),
        _der.boolean(False),
        _der.boolean(False),
    ]
    with pytest.raises(EvidenceError, match="non-minimal INTEGER"):
        decode_attestation_claims(_der.sequence(*body))
    body[4] = _der.integer(5)
    body[7] = _der.sequence(_der.utf8_string("B"), _der.utf8_string("A"))
    with pytest.raises(EvidenceError, match="sorted"):
        decode_attestation_claims(_der.sequence(*body))


def test_long_lengths_round_trip() -> None:
    many = tuple(f"INTEL-SA-{i:05d}" for i in range(40))  # pushes the length past 255 bytes
    claims = sgx_claims(advisory_ids=many)
    der = encode_attestation_claims(claims)
    assert der[1] == 0x82
    assert decode_attestation_claims(der) == claims


@given(
    tee=st.sampled_from(["sgx", "tdx"]),
    isvprodid=st.integers(0, 0xFFFF),
    isvsvn=st.integers(0, 0xFFFF),
    status=st.text(min_size=1, max_size=40),
    advisories=st.lists(st.text(max_size=20), max_size=8),
    debug=st.booleans(),
    simulated=st.booleans(),
    seed=st.binary(min_size=48, max_size=48),
)
def test_round_trip_property(  # noqa: PLR0917 (hypothesis passes the drawn values by name)
    tee: str,
    isvprodid: int,
    isvsvn: int,
    status: str,
    advisories: list[str],
    debug: bool,
    simulated: bool,
    seed: bytes,
) -> None:
    size = 32 if tee == "sgx" else 48
    claims = AttestationClaims(
        tee=tee,  # type: ignore[arg-type]
        measurement=seed[:size],
        signer=seed[::-1][:size],
        isvprodid=isvprodid,
        isvsvn=isvsvn,
        tcb_status=status,
        advisory_ids=tuple(advisories),
        debug=debug,
        simulated=simulated,
    )
    assert decode_attestation_claims(encode_attestation_claims(claims)) == claims


def test_read_from_certificate_and_critical_refused(
    account_ca: AccountCa, p256_key: ec.EllipticCurvePrivateKey
) -> None:
    claims = sgx_claims(debug=True)
    cert = issue_workload_certificate(
        account_ca,
        make_csr(p256_key),
        subject="w",
        sans=["w.example"],
        validity=timedelta(days=1),
        serial=3,
        attestation=claims,
        now=NOW,
    )
    assert read_attestation_extension(cert) == claims
    # A certificate (from anyone) that marks the extension critical is not Sanctum's.
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .public_key(p256_key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(
                ATTESTATION_EXTENSION_OID, encode_attestation_claims(claims)
            ),
            critical=True,
        )
        .sign(p256_key, hashes.SHA256())
    )
    with pytest.raises(EvidenceError) as caught:
        read_attestation_extension(forged)
    assert caught.value.code == "ca.extension_malformed"


@given(data=st.binary(max_size=300))
def test_decoder_only_raises_evidence_errors_on_garbage(data: bytes) -> None:
    try:
        decode_attestation_claims(data)
    except EvidenceError as exc:
        code = exc.code
    else:
        return
    assert code.startswith("ca.")


@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_decoder_never_misreads_a_corrupted_value(position: int, flip: int) -> None:
    good = encode_attestation_claims(sgx_claims())
    index = position % len(good)
    corrupted = bytearray(good)
    corrupted[index] ^= flip
    try:
        claims = decode_attestation_claims(bytes(corrupted))
    except EvidenceError:
        return
    # A corruption that still decodes must re-encode to exactly the corrupted bytes (DER is
    # canonical), so no two encodings ever mean the same claims.
    assert encode_attestation_claims(claims) == bytes(corrupted)
