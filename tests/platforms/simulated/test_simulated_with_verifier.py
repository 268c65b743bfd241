"""Simulated evidence through Sanctum's own verifier (issue [B]), unchanged.

The simulator must make the verifier compute every dialled status and refuse every dialled
defect with the right code, and the verified result says ``simulated`` only because of the trust
anchor. dcap-qvl is run on the same inputs to show both verifiers agree.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import dcap_qvl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctum.attestation.collateral import load_collateral_bundle
from sanctum.attestation.result import SgxEnclaveIdentity
from sanctum.attestation.result import TdIdentity as VerifiedTdIdentity
from sanctum.attestation.trust import TrustAnchor
from sanctum.attestation.verify import verify_quote
from sanctum.errors import EvidenceError, UsageError
from sanctum.platforms.simulated import (
    ADVISORY_IDS,
    CollateralDates,
    PlatformTcb,
    SgxIdentity,
    SimulatedPlatform,
    SimulationPki,
    TcbDial,
    TdIdentity,
    build_collateral_bundle,
    build_qe_identity,
    build_tcb_info,
)

ACCEPTED = [
    TcbDial.UP_TO_DATE,
    TcbDial.SW_HARDENING_NEEDED,
    TcbDial.CONFIGURATION_NEEDED,
    TcbDial.CONFIGURATION_AND_SW_HARDENING_NEEDED,
    TcbDial.OUT_OF_DATE,
    TcbDial.OUT_OF_DATE_CONFIGURATION_NEEDED,
]
REPORT_DATA = bytes(range(100, 164))


@pytest.fixture(scope="module")
def anchor(pki: SimulationPki) -> TrustAnchor:
    return TrustAnchor.from_bytes(pki.root_der(), simulated=True)


def _at(now: datetime) -> datetime:
    return now + timedelta(seconds=1)


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
@pytest.mark.parametrize("dial", ACCEPTED)
def test_dialled_status_is_verified_and_agrees_with_dcap_qvl(
    pki: SimulationPki, anchor: TrustAnchor, now: datetime, tee: str, dial: TcbDial
) -> None:
    platform = SimulatedPlatform(pki, tee=tee, tcb=dial, now=now)  # type: ignore[arg-type]
    quote = platform.quote(REPORT_DATA)
    result = verify_quote(quote, platform.collateral(), trust_anchor=anchor, now=_at(now))
    assert result.tee == tee
    assert result.version == (3 if tee == "sgx" else 4)
    assert result.simulated
    assert result.advisory_ids == tuple(sorted(ADVISORY_IDS[dial]))
    assert result.platform.fmspc == platform.pck_extension.fmspc
    assert result.platform.ppid == platform.pck_extension.ppid
    assert result.qe.status == "UpToDate"
    reference = dcap_qvl.verify_with_root_ca(
        quote,
        dcap_qvl.QuoteCollateralV3.from_json(platform.collateral_json().decode()),
        platform.root_ca_der(),
        int(_at(now).timestamp()),
    )
    assert result.status == reference.status
    assert sorted(result.advisory_ids) == sorted(reference.advisory_ids)


def test_sgx_identity_is_reported_as_dialled(
    pki: SimulationPki, anchor: TrustAnchor, now: datetime
) -> None:
    identity = SgxIdentity(
        mr_enclave=bytes([0x11]) * 32,
        mr_signer=bytes([0x22]) * 32,
        isv_prod_id=42,
        isv_svn=5,
        config_svn=2,
        config_id=bytes([0x33]) * 64,
    )
    platform = SimulatedPlatform(pki, tee="sgx", identity=identity, now=now)
    result = verify_quote(
        platform.quote(REPORT_DATA), platform.collateral(), trust_anchor=anchor, now=_at(now)
    )
    enclave = result.identity
    assert isinstance(enclave, SgxEnclaveIdentity)
    assert (enclave.mrenclave, enclave.mrsigner) == (identity.mr_enclave, identity.mr_signer)
    assert (enclave.isv_prod_id, enclave.isv_svn, enclave.config_svn) == (42, 5, 2)
    assert enclave.config_id == identity.config_id
    assert enclave.report_data == REPORT_DATA
    assert not enclave.debug


def test_td_identity_is_reported_as_dialled(
    pki: SimulationPki, anchor: TrustAnchor, now: datetime
) -> None:
    identity = TdIdentity(mr_td=bytes([0x44]) * 48, rtmr2=bytes([0x55]) * 48)
    platform = SimulatedPlatform(pki, tee="tdx", identity=identity, now=now)
    result = verify_quote(
        platform.quote(REPORT_DATA), platform.collateral(), trust_anchor=anchor, now=_at(now)
    )
    td = result.identity
    assert isinstance(td, VerifiedTdIdentity)
    assert td.mr_td == identity.mr_td
    assert td.rtmr2 == identity.rtmr2
    assert td.mr_seam == identity.mr_seam
    assert td.tee_tcb_svn == platform.platform_tcb.tee_tcb_svn
    assert td.report_data == REPORT_DATA
    assert result.tdx_module_status == "UpToDate"


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_debug_is_reported_not_refused(
    pki: SimulationPki, anchor: TrustAnchor, now: datetime, tee: str
) -> None:
    # Intel's QVL does not judge the application's debug bit; policy does (dcap-qvl refuses).
    platform = SimulatedPlatform(pki, tee=tee, debug=True, now=now)  # type: ignore[arg-type]
    result = verify_quote(
        platform.quote(b""), platform.collateral(), trust_anchor=anchor, now=_at(now)
    )
    assert result.debug
    assert result.identity.debug


def test_tdx_v5_service_td_is_reported(
    pki: SimulationPki, anchor: TrustAnchor, now: datetime
) -> None:
    identity = TdIdentity(mr_servicetd=bytes([0x66]) * 48)
    platform = SimulatedPlatform(pki, tee="tdx", identity=identity, quote_version=5, now=now)
    result = verify_quote(
        platform.quote(b""), platform.collateral(), trust_anchor=anchor, now=_at(now)
    )
    assert result.version == 5
    assert isinstance(result.identity, VerifiedTdIdentity)
    assert result.identity.mr_servicetd == identity.mr_servicetd


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"tcb": "not_supported"}, "tcb.not_supported"),
        ({"tcb": "revoked"}, "tcb.revoked"),
        ({"qe_status": "Revoked"}, "tcb.revoked"),
        ({"revoked_pck": True}, "pck.revoked"),
        ({"revoked_pck_ca": True}, "pck.ca_revoked"),
        ({"revoked_tcb_signing": True}, "tcb_info.signing_cert_revoked"),
    ],
)
def test_dialled_defects_are_refused_with_their_code(
    pki: SimulationPki,
    now: datetime,
    tee: str,
    options: dict[str, object],
    code: str,
) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now, **options)  # type: ignore[arg-type]
    quote = platform.quote(b"")
    anchor = TrustAnchor.from_bytes(pki.root_der(), simulated=True)
    with pytest.raises(EvidenceError) as info:
        verify_quote(quote, platform.collateral(), trust_anchor=anchor, now=_at(now))
    assert info.value.code == code
    with pytest.raises(ValueError, match="Verification failed"):
        dcap_qvl.verify_with_root_ca(
            quote,
            dcap_qvl.QuoteCollateralV3.from_json(platform.collateral_json().decode()),
            platform.root_ca_der(),
            int(_at(now).timestamp()),
        )


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_qe_out_of_date_converges(
    pki: SimulationPki, anchor: TrustAnchor, now: datetime, tee: str
) -> None:
    platform = SimulatedPlatform(pki, tee=tee, qe_status="OutOfDate", now=now)  # type: ignore[arg-type]
    result = verify_quote(
        platform.quote(b""), platform.collateral(), trust_anchor=anchor, now=_at(now)
    )
    assert result.status == "OutOfDate"
    assert result.qe.status == "OutOfDate"
    assert result.platform_status == "UpToDate"


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_expired_collateral(
    pki: SimulationPki, anchor: TrustAnchor, now: datetime, tee: str
) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now)  # type: ignore[arg-type]
    quote = platform.quote(b"")
    expired = platform.collateral(expired=True)
    with pytest.raises(EvidenceError) as info:
        verify_quote(quote, expired, trust_anchor=anchor, now=_at(now))
    assert info.value.code == "collateral.expired"
    flagged = verify_quote(
        quote, expired, trust_anchor=anchor, now=_at(now), allow_expired_collateral=True
    )
    assert flagged.collateral_expired
    assert not verify_quote(
        quote, platform.collateral(), trust_anchor=anchor, now=_at(now)
    ).collateral_expired


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_intel_anchor_and_foreign_simulation_roots_refuse(
    pki: SimulationPki, now: datetime, tee: str
) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now)  # type: ignore[arg-type]
    quote = platform.quote(b"")
    for anchor in (
        TrustAnchor.intel(),
        TrustAnchor.from_bytes(SimulationPki.create(now=now).root_der(), simulated=True),
    ):
        with pytest.raises(EvidenceError) as info:
            verify_quote(quote, platform.collateral(), trust_anchor=anchor, now=_at(now))
        assert info.value.code.startswith("pck.")


def test_simulated_flag_comes_from_the_anchor_only(pki: SimulationPki, now: datetime) -> None:
    platform = SimulatedPlatform(pki, tee="sgx", now=now)
    quote = platform.quote(b"")
    # A simulation root cannot be passed off as hardware: only Intel's root is unlabelled.
    with pytest.raises(UsageError) as info:
        TrustAnchor.from_bytes(pki.root_der(), simulated=False)
    assert info.value.code == "trust.anchor_not_intel"
    labelled = TrustAnchor.from_bytes(pki.root_der(), simulated=True)
    collateral = platform.collateral()
    assert verify_quote(quote, collateral, trust_anchor=labelled, now=_at(now)).simulated


@pytest.mark.parametrize(
    ("dial", "expected"),
    [
        (TcbDial.OUT_OF_DATE, "TDRelaunchAdvised"),
        (TcbDial.OUT_OF_DATE_CONFIGURATION_NEEDED, "TDRelaunchAdvisedConfigurationNeeded"),
        (TcbDial.UP_TO_DATE, "UpToDate"),
    ],
)
def test_td_relaunch_is_advised_after_a_module_update(
    pki: SimulationPki, anchor: TrustAnchor, now: datetime, dial: TcbDial, expected: str
) -> None:
    tcb = PlatformTcb(tee_tcb_svn2=bytes([3, 1, 3]) + bytes(13))
    platform = SimulatedPlatform(
        pki, tee="tdx", tcb=dial, platform_tcb=tcb, quote_version=5, now=now
    )
    quote = platform.quote(b"")
    result = verify_quote(quote, platform.collateral(), trust_anchor=anchor, now=_at(now))
    assert result.status == expected
    assert result.advisory_ids == tuple(sorted(ADVISORY_IDS[dial]))
    reference = dcap_qvl.verify_with_root_ca(
        quote,
        dcap_qvl.QuoteCollateralV3.from_json(platform.collateral_json().decode()),
        platform.root_ca_der(),
        int(_at(now).timestamp()),
    )
    assert reference.status == expected


@settings(max_examples=30, deadline=None)
@given(
    case=st.fixed_dictionaries(
        {
            "report_data": st.binary(max_size=64),
            "mr_enclave": st.binary(min_size=32, max_size=32),
            "isv_prod_id": st.integers(0, 0xFFFF),
            "isv_svn": st.integers(0, 0xFFFF),
            "cpu_svn": st.binary(min_size=16, max_size=16),
            "pce_svn": st.integers(0, 0xFFFE),
        }
    )
)
def test_any_sgx_identity_round_trips_through_the_verifier(
    pki: SimulationPki, now: datetime, case: dict[str, Any]
) -> None:
    identity = SgxIdentity(
        mr_enclave=case["mr_enclave"], isv_prod_id=case["isv_prod_id"], isv_svn=case["isv_svn"]
    )
    tcb = PlatformTcb(cpu_svn=case["cpu_svn"], pce_svn=case["pce_svn"])
    platform = SimulatedPlatform(pki, tee="sgx", identity=identity, platform_tcb=tcb, now=now)
    result = verify_quote(
        platform.quote(case["report_data"]),
        platform.collateral(),
        trust_anchor=TrustAnchor.from_bytes(pki.root_der(), simulated=True),
        now=now,
    )
    assert result.status == "UpToDate"
    enclave = result.identity
    assert isinstance(enclave, SgxEnclaveIdentity)
    assert enclave.report_data == case["report_data"].ljust(64, b"\0")
    assert (enclave.mrenclave, enclave.isv_prod_id, enclave.isv_svn) == (
        case["mr_enclave"],
        case["isv_prod_id"],
        case["isv_svn"],
    )
    assert result.platform.cpu_svn == case["cpu_svn"]
    assert result.platform.pce_svn == case["pce_svn"]


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_a_verifier_clock_slightly_behind_still_accepts(
    pki: SimulationPki, anchor: TrustAnchor, now: datetime, tee: str
) -> None:
    platform = SimulatedPlatform(pki, tee=tee, now=now)  # type: ignore[arg-type]
    quote = platform.quote(b"")
    behind = now - timedelta(minutes=4)
    result = verify_quote(quote, platform.collateral(), trust_anchor=anchor, now=behind)
    assert result.status == "UpToDate"
    with pytest.raises(EvidenceError) as info:
        verify_quote(
            quote, platform.collateral(), trust_anchor=anchor, now=now - timedelta(hours=1)
        )
    # Not yet valid: the verifier reports it with its collateral validity code.
    assert info.value.code.startswith("collateral.")


def test_hand_built_collateral_for_another_fmspc_is_refused(
    pki: SimulationPki, anchor: TrustAnchor, now: datetime
) -> None:
    platform = SimulatedPlatform(pki, tee="sgx", now=now)
    dates = CollateralDates.fresh(now)
    tcb_info = build_tcb_info(
        tee="sgx",
        fmspc=bytes.fromhex("00906ED50000"),
        pce_id=bytes(2),
        tcb=platform.platform_tcb,
        dial=TcbDial.UP_TO_DATE,
        dates=dates,
    )
    qe_identity = build_qe_identity(tee="sgx", qe=platform.quoting_enclave.qe_identity, dates=dates)
    bundle = build_collateral_bundle(
        pki,
        pck_ca=platform.pck_ca,
        tcb_info=tcb_info,
        qe_identity=qe_identity,
        crl_dates=dates,
    )
    with pytest.raises(EvidenceError) as info:
        verify_quote(
            platform.quote(b""),
            load_collateral_bundle(bundle),
            trust_anchor=anchor,
            now=_at(now),
        )
    assert info.value.code == "tcb_info.fmspc_mismatch"


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
@pytest.mark.parametrize("cert_type", [1, 3])
def test_ppid_certification_types_verify_with_the_bundled_chain(
    pki: SimulationPki, anchor: TrustAnchor, now: datetime, tee: str, cert_type: int
) -> None:
    platform = SimulatedPlatform(
        pki,
        tee=tee,  # type: ignore[arg-type]
        now=now,
        certification_data_type=cert_type,  # type: ignore[arg-type]
    )
    collateral = platform.collateral()
    assert collateral.pck_certificate_chain is not None
    result = verify_quote(platform.quote(b""), collateral, trust_anchor=anchor, now=_at(now))
    assert result.status == "UpToDate"
    assert result.platform.ppid == platform.pck_extension.ppid
