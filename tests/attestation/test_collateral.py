"""Collateral loaders: the QuoteCollateralV3 bundle and Intel PCS responses as served."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import urllib.parse

import dcap_qvl
import pytest
from _dcap_cases import CASE_NAMES, VECTORS, collateral, collateral_text, intel, verify_time
from _dcap_cases import quote_bytes as case_quote
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.attestation.collateral import (
    Collateral,
    collateral_from_pcs,
    dump_collateral_bundle,
    extract_signed_body,
    load_collateral_bundle,
    normalize_crl,
)
from sanctum.attestation.tcb import TcbStatus
from sanctum.attestation.verify import verify_quote
from sanctum.errors import EvidenceError, SanctumError

SOURCES = VECTORS / "sources"
SIG = "ab" * 64


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bundle_round_trips(name):
    loaded = collateral(name)
    dumped = dump_collateral_bundle(loaded)
    assert load_collateral_bundle(dumped) == loaded
    assert load_collateral_bundle(dumped).digest == loaded.digest
    original = json.loads(collateral_text(name))
    assert loaded.tcb_info_text == original["tcb_info"].encode()
    assert loaded.qe_identity_signature.hex() == original["qe_identity_signature"]


@pytest.mark.parametrize("name", ["sgx-v3-phala", "tdx-v4-phala", "tdx-v4-automata-0725"])
def test_dumped_bundle_is_accepted_by_dcap_qvl(name):
    dumped = dump_collateral_bundle(collateral(name)).decode()
    peer = dcap_qvl.QuoteCollateralV3.from_json(dumped)
    report = dcap_qvl.verify(case_quote(name), peer, int(verify_time(name).timestamp()))
    ours = verify_quote(
        case_quote(name), collateral(name), trust_anchor=intel(), now=verify_time(name)
    )
    assert report.status == str(ours.status)


def _pem(der_path) -> str:
    cert = x509.load_der_x509_certificate(der_path.read_bytes())
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_pcs_responses_of_go_tdx_guest_give_the_case_collateral():
    src = SOURCES / "go-tdx-guest"
    chain = (src / "tcb_info_issuer_chain.pem").read_text()
    built = collateral_from_pcs(
        tcb_info_body=(src / "sample_tcbInfo_response").read_bytes(),
        tcb_info_issuer_chain=urllib.parse.quote(chain),  # As the PCS header carries it.
        qe_identity_body=(src / "sample_qeIdentity_response").read_bytes(),
        qe_identity_issuer_chain=chain,
        pck_crl=(src / "pckcrl").read_bytes(),
        pck_crl_issuer_chain=(src / "pck_crl_issuer_chain.pem").read_bytes(),
        root_ca_crl=(src / "rootcrl.der").read_bytes().hex(),  # PCCS serves hex.
    )
    case = collateral("tdx-v4-gotdxguest-spr-e4")
    assert built.tcb_info_text == case.tcb_info_text
    assert built.tcb_info_signature == case.tcb_info_signature
    assert built.qe_identity_text == case.qe_identity_text
    assert built.pck_crl == case.pck_crl
    assert built.root_ca_crl == case.root_ca_crl
    with pytest.raises(EvidenceError) as info:
        verify_quote(
            case_quote("tdx-v4-gotdxguest-spr-e4"),
            built,
            trust_anchor=intel(),
            now=verify_time("tdx-v4-gotdxguest-spr-e4"),
        )
    # Every signature and CRL passes; only the TCB level match fails, as Intel's QVL says.
    assert info.value.code == "tcb.not_supported"


def test_pcs_responses_of_automata_verify_the_sgx_quote():
    evm = SOURCES / "automata-dcap-attestation" / "evm-assets-0825"
    sol = SOURCES / "automata-dcap-attestation" / "solana-tests-data"
    chain = _pem(sol / "signing.der") + _pem(sol / "root.der")
    crl_pem = x509.load_der_x509_crl((sol / "intel_root_ca_crl.der").read_bytes()).public_bytes(
        serialization.Encoding.PEM
    )
    name = "sgx-v3-automata-00606a"
    built = collateral_from_pcs(
        tcb_info_body=(evm / "sgx_tcbinfov3_00606a000000.json").read_bytes(),
        tcb_info_issuer_chain=chain,
        qe_identity_body=(evm / "sgx_qeidentity_v4.json").read_text(),
        qe_identity_issuer_chain=chain.encode(),
        pck_crl=(evm / "platform_crl.der").read_bytes(),
        pck_crl_issuer_chain=collateral(name).pck_crl_issuer_chain,
        root_ca_crl=crl_pem,
    )
    result = verify_quote(case_quote(name), built, trust_anchor=intel(), now=verify_time(name))
    assert result.status == TcbStatus.SW_HARDENING_NEEDED
    assert result.advisory_ids == ("INTEL-SA-00615",)


def test_signed_span_is_exact_even_with_whitespace():
    inner = b'{ "a" : [1, 2.5e3, "x\\"y", null, true],\n "b":{}}'
    body = b' {\n "tcbInfo" : ' + inner + b' ,\t"signature":"' + SIG.encode() + b'" }\n'
    text, signature = extract_signed_body(body, "tcbInfo")
    assert text == inner
    assert signature == bytes.fromhex(SIG)


@pytest.mark.parametrize(
    "body",
    [
        b'{"tcbInfo":{},"signature":"' + SIG.encode() + b'"} x',
        b'{"tcbInfo":{},"tcbInfo":{},"signature":"' + SIG.encode() + b'"}',
        b'{"tcbInfo":{}}',
        b'{"signature":"' + SIG.encode() + b'"}',
        b'{"tcbInfo":[],"signature":"' + SIG.encode() + b'"}',
        b'{"tcbInfo":{},"signature":"abcd"}',
        b'{"tcbInfo":{"a":01},"signature":"' + SIG.encode() + b'"}',
        b'{"tcbInfo":{"a":1,},"signature":"' + SIG.encode() + b'"}',
        b'{"tcbInfo":{"a":"\x01"},"signature":"' + SIG.encode() + b'"}',
        b'{"tcbInfo":{"a":NaN},"signature":"' + SIG.encode() + b'"}',
        b"[" * 200,
        b"",
    ],
)
def test_malformed_pcs_bodies_are_refused(body):
    with pytest.raises(EvidenceError) as info:
        extract_signed_body(body, "tcbInfo")
    assert info.value.code == "collateral.malformed"


def test_collateral_checks_field_shapes():
    base = collateral("sgx-v3-phala")
    with pytest.raises(EvidenceError) as info:
        dataclasses.replace(base, tcb_info_signature=b"\x00" * 63)
    assert info.value.code == "collateral.malformed"
    with pytest.raises(EvidenceError):
        dataclasses.replace(base, qe_identity_text=b"")
    with pytest.raises(EvidenceError):
        dataclasses.replace(base, tcb_info_issuer_chain="no certificates here")
    parsed = x509.load_pem_x509_certificates(base.tcb_info_issuer_chain.encode())
    assert dataclasses.replace(base, tcb_info_issuer_chain=parsed) == base  # type: ignore[arg-type]


def test_crl_encodings_normalise_to_der():
    der = collateral("sgx-v3-phala").pck_crl
    pem = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
    assert normalize_crl(der, "x") == der
    assert normalize_crl(pem, "x") == der
    assert normalize_crl(der.hex(), "x") == der
    assert normalize_crl(der.hex().upper().encode() + b"\n", "x") == der
    with pytest.raises(EvidenceError):
        normalize_crl(b"  ", "x")


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"[]",
        b"{}",
        json.dumps({"tcb_info": 1}).encode(),
    ],
)
def test_malformed_bundles_are_refused(document):
    with pytest.raises(EvidenceError) as info:
        load_collateral_bundle(document)
    assert info.value.code == "collateral.malformed"


def test_bundle_with_bad_hex_is_refused():
    document = json.loads(collateral_text("sgx-v3-phala"))
    for field in ("pck_crl", "tcb_info_signature"):
        broken = dict(document, **{field: "zz"})
        with pytest.raises(EvidenceError) as info:
            load_collateral_bundle(json.dumps(broken).encode())
        assert info.value.code == "collateral.malformed"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_escape_the_bundle_loader(data):
    try:
        result = load_collateral_bundle(data)
    except SanctumError:
        return
    assert isinstance(result, Collateral)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_escape_the_pcs_scanner(data):
    with contextlib.suppress(SanctumError):
        extract_signed_body(data, "tcbInfo")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_crl_normalisation(data):
    with contextlib.suppress(SanctumError):
        normalize_crl(data, "CRL")


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(), _json, max_size=5), st.sampled_from([None, 1, 2]))
def test_scanner_returns_the_exact_serialised_member(inner, indent):
    text = json.dumps(inner, indent=indent)
    body = '{"enclaveIdentity": ' + text + ', "signature": "' + SIG + '"}'
    span, signature = extract_signed_body(body.encode(), "enclaveIdentity")
    assert span == text.encode()
    assert json.loads(span) == inner
    assert signature == bytes.fromhex(SIG)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_bundles_give_collateral_or_sanctum_errors(data):
    original = bytearray(collateral_text("tdx-v4-phala"))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    with contextlib.suppress(SanctumError):
        load_collateral_bundle(bytes(original))
