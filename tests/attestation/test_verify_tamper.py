"""Tampering with any region of a real quote or its collateral is refused with the right code."""

from __future__ import annotations

import dataclasses
import json

import pytest
from _dcap_cases import collateral, collateral_text, intel, quote_bytes, verify_time
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.attestation.collateral import Collateral, load_collateral_bundle
from sanctum.attestation.quote import parse_quote
from sanctum.attestation.verify import verify_quote
from sanctum.errors import EvidenceError, SanctumError

SGX = "sgx-v3-phala"
TDX = "tdx-v4-phala"
TDX15 = "tdx-v5-gotdxguest"


def _refusal(name: str, quote: bytes, coll: Collateral | None = None) -> str:
    with pytest.raises(SanctumError) as info:
        verify_quote(quote, coll or collateral(name), trust_anchor=intel(), now=verify_time(name))
    assert isinstance(info.value, EvidenceError)
    return info.value.code


def _flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def _regions(name: str) -> dict[str, tuple[int, int]]:
    """Return the byte ranges of each region of the quote, found from the parsed structure."""
    raw = quote_bytes(name)
    quote = parse_quote(raw)
    qe = quote.signature.qe
    signed = len(quote.signed_bytes)
    sig_at = signed + 4
    qe_at = raw.index(qe.qe_report_bytes, sig_at)
    auth_at = qe_at + 384 + 64 + 2
    cert_at = raw.index(qe.certification.data, auth_at)
    return {
        "header_user_data": (28, 48),
        "body": (54 if quote.version == 5 else 48, signed),
        "quote_signature": (sig_at, sig_at + 64),
        "attestation_key": (sig_at + 64, sig_at + 128),
        "qe_report": (qe_at, qe_at + 384),
        "qe_report_signature": (qe_at + 384, qe_at + 448),
        "qe_auth_data": (auth_at, auth_at + len(qe.qe_auth_data)),
        "certification_data": (cert_at, cert_at + len(qe.certification.data)),
    }


EXPECTED_CODES = {
    "header_user_data": {"quote.signature_invalid"},
    "quote_signature": {"quote.signature_invalid"},
    "attestation_key": {"qe.report_data_mismatch"},
    "qe_report": {"qe.report_signature_invalid"},
    "qe_report_signature": {"qe.report_signature_invalid"},
    "qe_auth_data": {"qe.report_data_mismatch"},
    # A flipped bit in base64 text breaks the PEM, the DER, a signature or the SGX extension.
    "certification_data": {"quote.malformed", "pck.chain_invalid", "pck.extension_invalid"},
}


def _offsets(start: int, end: int, count: int = 24) -> list[int]:
    step = max(1, (end - start) // count)
    return [*range(start, end, step), end - 1]


@pytest.mark.parametrize("name", [SGX, TDX, TDX15])
@pytest.mark.parametrize("region", sorted(EXPECTED_CODES))
def test_flipping_a_byte_in_each_region_is_refused(name, region):
    start, end = _regions(name)[region]
    raw = quote_bytes(name)
    for offset in _offsets(start, end):
        code = _refusal(name, _flip(raw, offset))
        assert code in EXPECTED_CODES[region], (region, offset, code)


@pytest.mark.parametrize("name", [SGX, TDX, TDX15])
def test_flipping_report_body_bytes_breaks_the_quote_signature(name):
    start, end = _regions(name)["body"]
    raw = quote_bytes(name)
    for offset in _offsets(start, end, 48):
        code = _refusal(name, _flip(raw, offset))
        relative = offset - start
        if name != SGX and relative < 16 + 48 + 48 + 8:
            # TEE_TCB_SVN, MRSEAM, MRSIGNERSEAM and SEAM attributes feed the TDX module check
            # and TCB matching, which run before the quote signature (Intel's order).
            assert code in {
                "quote.signature_invalid",
                "tdx_module.mismatch",
                "tcb.not_supported",
            }, (offset, code)
        else:
            assert code == "quote.signature_invalid", (offset, code)


def test_v5_body_descriptor_is_checked():
    raw = quote_bytes(TDX15)
    for offset in range(48, 54):
        assert _refusal(TDX15, _flip(raw, offset)).startswith("quote."), offset


@pytest.mark.parametrize("name", [SGX, TDX])
def test_header_fields_are_checked(name):
    raw = quote_bytes(name)
    assert _refusal(name, _flip(raw, 12)) == "quote.unsupported_qe_vendor"
    assert _refusal(name, _flip(raw, 8)) == "quote.signature_invalid"  # QE SVN field
    assert _refusal(name, _flip(raw, 0, 0x04)).startswith("quote.")
    assert _refusal(name, _flip(raw, 2, 0x04)).startswith("quote.")


@pytest.mark.parametrize("name", [SGX, TDX])
def test_truncation_at_every_boundary_is_refused(name):
    raw = quote_bytes(name)
    quote = parse_quote(raw)
    boundaries = {0, 1, 47, 48, 100, len(quote.signed_bytes), len(quote.signed_bytes) + 4}
    for start, end in _regions(name).values():
        boundaries.update({start, end - 1})
    boundaries.add(quote.length - 1)
    for cut in sorted(boundaries):
        if cut >= quote.length:
            continue
        assert _refusal(name, raw[:cut]).startswith("quote."), cut


def _with(name: str, **changes: object) -> Collateral:
    return dataclasses.replace(collateral(name), **changes)


@pytest.mark.parametrize("name", [SGX, TDX])
def test_tampered_tcb_info_text_is_refused(name):
    text = collateral(name).tcb_info_text
    for offset in _offsets(0, len(text), 16):
        changed = bytearray(text)
        changed[offset] = ord("7") if changed[offset] != ord("7") else ord("8")
        code = _refusal(name, quote_bytes(name), _with(name, tcb_info_text=bytes(changed)))
        assert code == "tcb_info.signature_invalid", offset


@pytest.mark.parametrize("name", [SGX, TDX])
def test_tampered_qe_identity_text_is_refused(name):
    text = collateral(name).qe_identity_text
    for offset in _offsets(0, len(text), 16):
        changed = bytearray(text)
        changed[offset] = ord("7") if changed[offset] != ord("7") else ord("8")
        code = _refusal(name, quote_bytes(name), _with(name, qe_identity_text=bytes(changed)))
        assert code == "qe_identity.signature_invalid", offset


@pytest.mark.parametrize("field", ["tcb_info_signature", "qe_identity_signature"])
def test_tampered_collateral_signatures_are_refused(field):
    name = SGX
    signature = getattr(collateral(name), field)
    for offset in (0, 31, 32, 63):
        code = _refusal(name, quote_bytes(name), _with(name, **{field: _flip(signature, offset)}))
        assert code == field.replace("_signature", ".signature_invalid")


@pytest.mark.parametrize("field", ["pck_crl", "root_ca_crl"])
@pytest.mark.parametrize("name", [SGX, TDX])
def test_tampered_crls_are_refused(name, field):
    der = getattr(collateral(name), field)
    for offset in _offsets(0, len(der), 20):
        changed = _with(name, **{field: _flip(der, offset, 0x10)})
        assert _refusal(name, quote_bytes(name), changed) == "crl.invalid", offset


def test_swapped_issuer_chains_are_refused():
    name = SGX
    coll = collateral(name)
    assert (
        _refusal(
            name, quote_bytes(name), _with(name, tcb_info_issuer_chain=coll.pck_crl_issuer_chain)
        )
        == "tcb_info.chain_invalid"
    )
    assert (
        _refusal(
            name, quote_bytes(name), _with(name, qe_identity_issuer_chain=coll.pck_crl_issuer_chain)
        )
        == "qe_identity.chain_invalid"
    )
    assert (
        _refusal(
            name, quote_bytes(name), _with(name, pck_crl_issuer_chain=coll.tcb_info_issuer_chain)
        )
        == "crl.invalid"
    )


def test_collateral_of_another_platform_is_refused():
    # SGX TCB info for a TDX quote: the TCB info is for the wrong TEE.
    sgx = collateral(SGX)
    wrong_tee = _with(
        TDX,
        tcb_info_text=sgx.tcb_info_text,
        tcb_info_signature=sgx.tcb_info_signature,
        tcb_info_issuer_chain=sgx.tcb_info_issuer_chain,
    )
    assert _refusal(TDX, quote_bytes(TDX), wrong_tee) == "tcb_info.tee_mismatch"
    # SGX collateral of another FMSPC (same CA type): FMSPC mismatch.
    other = "sgx-v3-automata-00606a"
    mixed = dataclasses.replace(
        collateral(other),
        tcb_info_text=sgx.tcb_info_text,
        tcb_info_signature=sgx.tcb_info_signature,
        tcb_info_issuer_chain=sgx.tcb_info_issuer_chain,
    )
    assert _refusal(other, quote_bytes(other), mixed) == "tcb_info.fmspc_mismatch"


def test_pck_crl_of_the_other_ca_is_refused():
    # The Phala SGX quote's PCK is from the Processor CA; a Platform-CA CRL cannot clear it.
    platform_crl = collateral("sgx-v3-automata-00606a")
    mixed = _with(
        SGX,
        pck_crl=platform_crl.pck_crl,
        pck_crl_issuer_chain=platform_crl.pck_crl_issuer_chain,
    )
    assert _refusal(SGX, quote_bytes(SGX), mixed) == "crl.invalid"


def test_tdx_quote_with_sgx_qe_identity_is_refused():
    mixed = _with(
        TDX,
        qe_identity_text=collateral(SGX).qe_identity_text,
        qe_identity_signature=collateral(SGX).qe_identity_signature,
        qe_identity_issuer_chain=collateral(SGX).qe_identity_issuer_chain,
    )
    assert _refusal(TDX, quote_bytes(TDX), mixed) == "qe_identity.tee_mismatch"


def test_bundle_with_modified_signed_text_is_refused():
    document = json.loads(collateral_text(SGX))
    document["tcb_info"] = json.dumps(json.loads(document["tcb_info"]))  # re-serialised, spaces
    code = _refusal(SGX, quote_bytes(SGX), load_collateral_bundle(json.dumps(document).encode()))
    assert code == "tcb_info.signature_invalid"


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.sampled_from([SGX, TDX]),
    st.sampled_from(
        [
            "pck_crl",
            "root_ca_crl",
            "tcb_info_text",
            "qe_identity_text",
            "pck_crl_issuer_chain",
            "tcb_info_issuer_chain",
            "qe_identity_issuer_chain",
        ]
    ),
    st.data(),
)
def test_mutated_collateral_gives_a_result_or_a_sanctum_error(name, field, data):
    value = getattr(collateral(name), field)
    raw = bytearray(value.encode() if isinstance(value, str) else value)
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    mutated = bytes(raw).decode("latin-1") if isinstance(value, str) else bytes(raw)
    try:
        changed = _with(name, **{field: mutated})
        verify_quote(quote_bytes(name), changed, trust_anchor=intel(), now=verify_time(name))
    except SanctumError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_quote_bytes_give_a_sanctum_error(data):
    with pytest.raises(SanctumError):
        verify_quote(data, collateral(SGX), trust_anchor=intel(), now=verify_time(SGX))
