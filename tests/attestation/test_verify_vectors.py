"""Every real DCAP case verifies to Intel QVL's expected outcome at its recorded time."""

from __future__ import annotations

import dataclasses

import pytest
from _dcap_cases import (
    ACCEPTED,
    CASES,
    NOT_SUPPORTED,
    collateral,
    intel,
    quote_bytes,
    verify_time,
)

from sanctum.attestation.quote import parse_quote
from sanctum.attestation.result import SgxEnclaveIdentity, TdIdentity
from sanctum.attestation.tcb import TcbStatus
from sanctum.attestation.verify import Verifier, verify_quote
from sanctum.errors import EvidenceError


@pytest.mark.parametrize("name", ACCEPTED)
def test_case_gives_intel_expected_status(name):
    case = CASES[name]
    expected = case["intel_qvl_logic_expected"]
    result = verify_quote(
        quote_bytes(name), collateral(name), trust_anchor=intel(), now=verify_time(name)
    )
    assert str(result.status) == expected["status"]
    assert list(result.advisory_ids) == expected["advisory_ids"]
    assert str(result.qe.status) == expected["qe_tcb_status"]
    assert result.tee == case["tee"].lower()
    assert result.version == case["quote_version"]
    assert result.platform.fmspc.hex().upper() == case["fmspc"]
    assert result.platform.ca_type == case["pck_ca"]
    assert result.simulated is False
    assert result.collateral_expired is False
    if "tdx_module_status" in expected:
        assert str(result.tdx_module_status) == expected["tdx_module_status"]
        assert list(result.tdx_module_advisory_ids) == expected["tdx_module_advisory_ids"]
    assert result.earliest_issue_date <= result.latest_issue_date <= result.verified_at
    assert result.verified_at <= result.earliest_expiration_date


@pytest.mark.parametrize("name", NOT_SUPPORTED)
def test_tcb_not_supported_is_refused(name):
    with pytest.raises(EvidenceError) as info:
        verify_quote(
            quote_bytes(name), collateral(name), trust_anchor=intel(), now=verify_time(name)
        )
    assert info.value.code == "tcb.not_supported"


@pytest.mark.parametrize("name", sorted(CASES))
def test_cached_verifier_gives_the_same_result_as_cold(name):
    verifier = Verifier(intel())
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(
                verifier.verify(quote_bytes(name), collateral(name), now=verify_time(name))
            )
        except EvidenceError as error:
            outcomes.append(error.code)
    try:
        cold: object = verify_quote(
            quote_bytes(name), collateral(name), trust_anchor=intel(), now=verify_time(name)
        )
    except EvidenceError as error:
        cold = error.code
    assert outcomes == [cold, cold, cold]
    if not isinstance(cold, str):
        assert verifier.cache.stats().hits >= 4


def test_parsed_quote_is_accepted_as_input():
    name = "tdx-v4-phala"
    parsed = parse_quote(quote_bytes(name))
    result = verify_quote(parsed, collateral(name), trust_anchor=intel(), now=verify_time(name))
    assert result.status == TcbStatus.UP_TO_DATE


def test_debug_enclave_is_reported_not_refused():
    # Intel's QVL does not judge the application enclave: DEBUG is a policy decision.
    name = "sgx-v3-debug-enclave"
    result = verify_quote(
        quote_bytes(name), collateral(name), trust_anchor=intel(), now=verify_time(name)
    )
    assert result.debug is True
    assert isinstance(result.identity, SgxEnclaveIdentity)
    assert result.identity.attributes[0] & 0x02
    assert result.to_dict()["debug"] is True


def test_non_debug_enclave_reports_debug_false():
    name = "sgx-v3-phala"
    result = verify_quote(
        quote_bytes(name), collateral(name), trust_anchor=intel(), now=verify_time(name)
    )
    assert result.debug is False
    summary = result.to_dict()
    for key in ("mrenclave", "mrsigner", "isv_prod_id", "isv_svn", "report_data", "fmspc"):
        assert key in summary
    assert summary["fmspc"] == "00a067110000"


def test_servicetd_quote_reports_mr_servicetd():
    name = "tdx-v5-alibaba-servicetd"
    result = verify_quote(
        quote_bytes(name), collateral(name), trust_anchor=intel(), now=verify_time(name)
    )
    assert isinstance(result.identity, TdIdentity)
    assert result.identity.mr_servicetd is not None
    assert any(result.identity.mr_servicetd)
    assert result.identity.tee_tcb_svn2 is not None
    # TDX module TDX_01 at isvsvn 5 is OutOfDate; its advisories join the union.
    assert result.tdx_module_status == TcbStatus.OUT_OF_DATE
    assert set(result.tdx_module_advisory_ids) <= set(result.advisory_ids)


def test_tcb_info_v2_case_has_no_advisories():
    name = "sgx-v3-automata-00606a-tcbinfo-v2"
    result = verify_quote(
        quote_bytes(name), collateral(name), trust_anchor=intel(), now=verify_time(name)
    )
    assert result.status == TcbStatus.SW_HARDENING_NEEDED
    assert result.advisory_ids == ()
    assert result.tcb_evaluation_data_number == 17


def test_platform_facts_come_from_the_pck_certificate():
    name = "sgx-v3-automata-00606a"
    result = verify_quote(
        quote_bytes(name), collateral(name), trust_anchor=intel(), now=verify_time(name)
    )
    platform = result.platform
    assert platform.ca_type == "platform"
    assert len(platform.ppid) == 16
    assert platform.pce_id == b"\x00\x00"
    assert platform.platform_instance_id is not None
    assert platform.dynamic_platform is not None
    assert platform.sgx_type in {"Standard", "Scalable", "ScalableWithIntegrity"}


def test_result_is_frozen():
    name = "tdx-v4-phala"
    result = verify_quote(
        quote_bytes(name), collateral(name), trust_anchor=intel(), now=verify_time(name)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = TcbStatus.REVOKED  # type: ignore[misc]


def test_trailing_padding_is_ignored():
    name = "tdx-v4-phala"
    padded = quote_bytes(name) + bytes(1000)
    result = verify_quote(padded, collateral(name), trust_anchor=intel(), now=verify_time(name))
    assert result.status == TcbStatus.UP_TO_DATE
