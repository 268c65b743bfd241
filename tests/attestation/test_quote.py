"""Parsing real Intel DCAP quotes: every vector, every field that expected.json records."""

import hashlib
import json
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sanctum.attestation.errors import QuoteFormatError
from sanctum.attestation.pck import parse_pck_extensions, pck_ca_type
from sanctum.attestation.quote import (
    INTEL_QE_VENDOR_ID,
    CertificationData,
    Quote,
    SgxReportBody,
    TdReportBody,
    TeeType,
    parse_quote,
)
from sanctum.attestation.report import parse_sgx_report_body
from sanctum.errors import EvidenceError

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dcap"
EXPECTED = json.loads((VECTORS / "expected.json").read_text())
CASES = {case["case"]: case for case in EXPECTED["cases"]}
SOURCE_QUOTES = [
    "sources/oasis-core/quote_v3_ecdsa_p256_pck_chain.bin",
    "sources/oasis-core/quote_v3_ecdsa_p256_eppid.bin",
    "sources/oasis-core/quote_v4_tdx_ecdsa_p256.bin",
    "sources/oasis-core/quote_v4_tdx_ecdsa_p256_trailing.bin",
    "sources/phala-dcap-qvl/sgx_quote",
    "sources/phala-dcap-qvl/tdx_quote",
    "sources/phala-dcap-qvl/tdx_quote_outdated",
    "sources/go-tdx-guest/quote_v5_sample.dat",
    "sources/go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
    "sources/automata-dcap-attestation/evm-quotes/alibaba_quote_5.dat",
    "sources/automata-dcap-attestation/solana-tests-data/quote_sgx.bin",
    "sources/automata-dcap-attestation/solana-tests-data/quote_tdx.bin",
]
HEX_SOURCES = [
    "sources/automata-dcap-attestation/rust-crates-samples/quotev3.hex",
    "sources/automata-dcap-attestation/go-sdk-mock/sample_quotes.hex",
]


def _hex_quotes() -> dict[str, bytes]:
    quotes = {}
    for name in HEX_SOURCES:
        lines = [line.strip() for line in (VECTORS / name).read_text().splitlines()]
        for index, line in enumerate(line for line in lines if line):
            quotes[f"{name}#{index}"] = bytes.fromhex(line.removeprefix("0x"))
    return quotes


ALL_QUOTES: dict[str, bytes] = {
    **{name: (VECTORS / case["quote_file"]).read_bytes() for name, case in CASES.items()},
    **{name: (VECTORS / name).read_bytes() for name in SOURCE_QUOTES},
    **_hex_quotes(),
}


def _pck_leaf(quote: Quote) -> x509.Certificate:
    return x509.load_pem_x509_certificate(quote.signature.qe.certification.pck_chain_pem()[0])


def _public_key(xy: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xy)


def _der_signature(rs: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big"))


def test_vector_set_is_complete():
    assert len(CASES) == 12
    # quotev3.hex holds one quote, sample_quotes.hex two.
    assert len(ALL_QUOTES) == 12 + len(SOURCE_QUOTES) + 3


@pytest.mark.parametrize("name", sorted(ALL_QUOTES))
def test_every_real_quote_parses_consistently(name):
    data = ALL_QUOTES[name]
    quote = parse_quote(data)
    assert quote.header.attestation_key_type == 2
    assert quote.header.qe_vendor_id == INTEL_QE_VENDOR_ID
    assert quote.length <= len(data)
    # What follows the declared signature data is zero padding, except in go-tdx-guest's
    # SPR E4 quote, which appends a text marker to test exactly this rule.
    trailer = data[quote.length :]
    if "SPR" in name or "spr" in name:
        assert trailer == b"\nextra bytes(only for testing purpose)\n"
    else:
        assert trailer == bytes(len(trailer))
    signed = quote.signed_bytes
    assert data.startswith(signed)
    expected_signed = {1: 432, 2: 632, 3: 702, 4: 939}[quote.body_type]
    if quote.version != 5:
        expected_signed = {1: 432, 2: 632}[quote.body_type]
    assert len(signed) == expected_signed
    # The parsed header and body re-encode to exactly the signed bytes.
    descriptor = b""
    if quote.version == 5:
        descriptor = struct.pack("<HI", quote.body_type, quote.body.to_bytes().__len__())
    assert quote.header.to_bytes() + descriptor + quote.body.to_bytes() == signed
    qe = quote.signature.qe
    assert len(qe.qe_report_bytes) == 384
    assert qe.qe_report_bytes in data
    assert parse_sgx_report_body(qe.qe_report_bytes) == qe.qe_report
    assert qe.qe_report.to_bytes() == qe.qe_report_bytes
    assert len(quote.signature.signature) == 64
    assert len(quote.signature.attestation_key) == 64
    assert len(qe.qe_report_signature) == 64
    assert quote.tee == (TeeType.SGX if isinstance(quote.body, SgxReportBody) else TeeType.TDX)
    assert quote.report_data == quote.body.report_data
    assert quote.version == quote.header.version


@pytest.mark.parametrize("name", sorted(ALL_QUOTES))
def test_parsed_regions_are_the_ones_intel_signed(name):
    # Checking the signatures proves the parser cut the signed regions at the right offsets.
    quote = parse_quote(ALL_QUOTES[name])
    qe = quote.signature.qe
    key = _public_key(quote.signature.attestation_key)
    key.verify(
        _der_signature(quote.signature.signature), quote.signed_bytes, ec.ECDSA(hashes.SHA256())
    )
    digest = hashlib.sha256(quote.signature.attestation_key + qe.qe_auth_data).digest()
    assert qe.qe_report.report_data[:32] == digest
    if qe.certification.cert_type == 5:
        leaf_key = _pck_leaf(quote).public_key()
        assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
        leaf_key.verify(
            _der_signature(qe.qe_report_signature), qe.qe_report_bytes, ec.ECDSA(hashes.SHA256())
        )


@pytest.mark.parametrize("name", sorted(CASES))
def test_expected_json_facts(name):
    case = CASES[name]
    data = ALL_QUOTES[name]
    if "quote_sha256" in case:
        assert hashlib.sha256(data).hexdigest() == case["quote_sha256"]
    quote = parse_quote(data)
    assert quote.version == case["quote_version"]
    assert quote.tee.name == case["tee"]
    chain = quote.signature.qe.certification.pck_chain_pem()
    assert len(chain) == 3
    leaf = _pck_leaf(quote)
    assert parse_pck_extensions(leaf).fmspc.hex().upper() == case["fmspc"]
    assert pck_ca_type(leaf) == case["pck_ca"]
    assert quote.debug is (name == "sgx-v3-debug-enclave")
    if quote.tee == TeeType.TDX:
        assert isinstance(quote.body, TdReportBody)
        assert (quote.body.tee_tcb_svn2 is not None) is (quote.version == 5)
        assert (quote.body.mr_servicetd is not None) is (quote.version == 5)


def test_debug_enclave_attributes():
    quote = parse_quote(ALL_QUOTES["sgx-v3-debug-enclave"])
    assert isinstance(quote.body, SgxReportBody)
    assert quote.body.attributes[0] == 0x07
    assert quote.body.debug
    assert not quote.signature.qe.qe_report.debug


def test_mr_servicetd_is_nonzero_only_in_the_alibaba_quote():
    for name in ("tdx-v5-alibaba-servicetd", "tdx-v5-gotdxguest", "tdx-v5-phala-outdated"):
        body = parse_quote(ALL_QUOTES[name]).body
        assert isinstance(body, TdReportBody)
        assert body.mr_servicetd is not None
        assert (body.mr_servicetd != bytes(48)) is (name == "tdx-v5-alibaba-servicetd")
    body = parse_quote(ALL_QUOTES["tdx-v5-alibaba-servicetd"]).body
    assert isinstance(body, TdReportBody)
    assert body.mr_servicetd is not None
    assert body.mr_servicetd.hex().startswith("383c87d3bbb047b2")
    assert body.extension is None


def test_tdx_fields_of_the_oasis_quote():
    quote = parse_quote(ALL_QUOTES["sources/oasis-core/quote_v4_tdx_ecdsa_p256.bin"])
    body = quote.body
    assert isinstance(body, TdReportBody)
    assert quote.body_type == 2
    # expected.json: "TD attributes = SEPT_VE_DISABLE only" (bit 28).
    assert int.from_bytes(body.td_attributes, "little") == 1 << 28
    assert not body.debug
    assert body.tee_tcb_svn2 is None
    assert body.mr_servicetd is None
    assert len(body.mr_td) == 48


def test_trailing_bytes_after_the_signature_data_are_ignored():
    data = ALL_QUOTES["sources/oasis-core/quote_v4_tdx_ecdsa_p256_trailing.bin"]
    quote = parse_quote(data)
    assert len(data) == 5006
    assert quote.length == 4936
    assert parse_quote(data[: quote.length]) == quote
    assert parse_quote(data + bytes(1000)) == quote
    padded = parse_quote(ALL_QUOTES["tdx-v4-automata-0725"])
    assert len(ALL_QUOTES["tdx-v4-automata-0725"]) == 8000
    assert padded.length < 5000


def test_encrypted_ppid_quote():
    quote = parse_quote(ALL_QUOTES["sources/oasis-core/quote_v3_ecdsa_p256_eppid.bin"])
    certification = quote.signature.qe.certification
    assert certification.cert_type == 3
    identity = certification.pck_identity()
    assert identity.ppid_encrypted
    assert len(identity.ppid) == 384
    assert identity.cpu_svn.hex() == "05050c0cffff01000000000000000000"
    assert identity.pce_svn == 12
    assert identity.pce_id == b"\x00\x00"
    with pytest.raises(QuoteFormatError) as caught:
        certification.pck_chain_pem()
    assert caught.value.code == "quote.pck_chain_missing"


def test_pck_identity_of_other_types():
    plain = CertificationData(1, bytes(range(16)) + b"\x01" * 16 + b"\x05\x00" + b"\x00\x01")
    identity = plain.pck_identity()
    assert identity.ppid == bytes(range(16))
    assert not identity.ppid_encrypted
    assert identity.pce_svn == 5
    assert identity.pce_id == b"\x00\x01"
    rsa2048 = CertificationData(2, bytes(256 + 20)).pck_identity()
    assert rsa2048.ppid_encrypted
    assert len(rsa2048.ppid) == 256
    with pytest.raises(QuoteFormatError) as caught:
        CertificationData(1, bytes(35)).pck_identity()
    assert caught.value.code == "quote.malformed"
    with pytest.raises(QuoteFormatError) as caught:
        CertificationData(5, bytes(36)).pck_identity()
    assert caught.value.code == "quote.unsupported_certification_type"


def _chain_text() -> bytes:
    quote = parse_quote(ALL_QUOTES["sgx-v3-phala"])
    return quote.signature.qe.certification.data


def test_pem_chain_is_split_leaf_first_with_the_nul_terminator_ignored():
    data = _chain_text()
    assert data.endswith(b"\0")
    blocks = CertificationData(5, data).pck_chain_pem()
    assert [x509.load_pem_x509_certificate(block).subject.rfc4514_string() for block in blocks][
        2
    ].endswith("CN=Intel SGX Root CA")
    assert b"".join(blocks).rstrip(b"\n") == data.rstrip(b"\0").rstrip(b"\n")


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"\0",
        b"garbage",
        b"x" + b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\ntrailer",
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\0"
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ),
        b"-----BEGIN CERTIFICATE-----\nAA!A\n-----END CERTIFICATE-----\n",
    ],
)
def test_malformed_pem_chains_are_refused(text):
    with pytest.raises(QuoteFormatError) as caught:
        CertificationData(5, text).pck_chain_pem()
    assert caught.value.code == "quote.malformed"


@pytest.mark.parametrize("cert_type", [1, 2, 3, 4, 6, 7])
def test_only_type_5_carries_a_chain(cert_type):
    with pytest.raises(QuoteFormatError) as caught:
        CertificationData(cert_type, _chain_text()).pck_chain_pem()
    assert caught.value.code == "quote.pck_chain_missing"
    assert isinstance(caught.value, EvidenceError)


@pytest.mark.parametrize(
    "name",
    [
        "sgx-v3-phala",
        "tdx-v4-phala",
        "tdx-v5-gotdxguest",
        "sources/oasis-core/quote_v3_ecdsa_p256_eppid.bin",
    ],
)
def test_truncation_at_every_byte_is_refused(name):
    data = ALL_QUOTES[name]
    length = parse_quote(data).length
    for size in range(length):
        with pytest.raises(QuoteFormatError) as caught:
            parse_quote(data[:size])
        assert caught.value.code == "quote.truncated", size


def test_bytes_like_inputs_are_accepted():
    data = ALL_QUOTES["tdx-v4-phala"]
    quote = parse_quote(data)
    assert parse_quote(bytearray(data)) == quote
    assert parse_quote(memoryview(data)) == quote


def test_type_6_blob_unwraps_to_the_same_qe_data():
    data = ALL_QUOTES["tdx-v4-phala"]
    quote = parse_quote(data)
    start = len(quote.signed_bytes) + 4 + 128
    cert_type, size = struct.unpack_from("<HI", data, start)
    assert cert_type == 6
    blob = CertificationData(6, data[start + 6 : start + 6 + size])
    assert blob.qe_report_certification() == quote.signature.qe
    with pytest.raises(QuoteFormatError) as caught:
        CertificationData(6, blob.data[:-1]).qe_report_certification()
    assert caught.value.code == "quote.malformed"
    with pytest.raises(QuoteFormatError) as caught:
        CertificationData(5, blob.data).qe_report_certification()
    assert caught.value.code == "quote.unsupported_certification_type"
