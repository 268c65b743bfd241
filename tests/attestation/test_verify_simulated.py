"""Synthetic cases the real data lacks, built with the simulated platform's test PKI.

The simulated platform (``sanctum.platforms.simulated``) emits quotes in Intel's genuine formats
under its own root CA; verified with that root as trust anchor, the verifier computes every status
and refusal the real vectors cannot show (UpToDate SGX, revoked PCK, expired TCB info, ...).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache

import dcap_qvl
import pytest

from sanctum.attestation.collateral import Collateral, load_collateral_bundle
from sanctum.attestation.tcb import TcbStatus
from sanctum.attestation.trust import TrustAnchor
from sanctum.attestation.verify import Verifier, verify_quote
from sanctum.errors import EvidenceError
from sanctum.platforms.simulated.collateral import (
    TD_QE_IDENTITY,
    CollateralDates,
    PlatformTcb,
    TcbDial,
    build_qe_identity,
)
from sanctum.platforms.simulated.identity import TdIdentity as SimTdIdentity
from sanctum.platforms.simulated.pki import SimulationPki
from sanctum.platforms.simulated.platform import SimulatedPlatform

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REPORT_DATA = bytes(range(64))


@cache
def _pki() -> SimulationPki:
    return SimulationPki.create(now=NOW - timedelta(days=1), seed=b"b2-tests")


@cache
def _anchor() -> TrustAnchor:
    return TrustAnchor.from_bytes(_pki().root_der(), simulated=True)


def _platform(tee="sgx", **options) -> SimulatedPlatform:
    return SimulatedPlatform(_pki(), tee=tee, now=NOW, seed=b"platform", **options)


def _verify(platform: SimulatedPlatform, collateral: Collateral | None = None, **options):
    return verify_quote(
        platform.quote(REPORT_DATA),
        collateral or platform.collateral(now=NOW),
        trust_anchor=_anchor(),
        now=options.pop("now", NOW + timedelta(hours=1)),
        **options,
    )


def _refusal(platform: SimulatedPlatform, collateral: Collateral | None = None, **options) -> str:
    with pytest.raises(EvidenceError) as info:
        _verify(platform, collateral, **options)
    return info.value.code


@pytest.mark.parametrize(("tee", "version"), [("sgx", 3), ("tdx", 4), ("tdx", 5)])
def test_up_to_date_quote_is_marked_simulated(tee, version):
    platform = _platform(tee, quote_version=version)
    result = _verify(platform)
    assert result.status == TcbStatus.UP_TO_DATE
    assert result.advisory_ids == ()
    assert result.simulated is True
    assert result.tee == tee
    assert result.version == version
    assert result.report_data == REPORT_DATA
    assert result.platform.fmspc == platform.pck_extension.fmspc


def test_simulated_quote_is_refused_under_the_intel_root():
    platform = _platform()
    with pytest.raises(EvidenceError) as info:
        verify_quote(
            platform.quote(REPORT_DATA),
            platform.collateral(now=NOW),
            trust_anchor=TrustAnchor.intel(),
            now=NOW,
        )
    assert info.value.code in {"pck.chain_invalid", "crl.invalid"}


STATUS_DIALS = {
    TcbDial.UP_TO_DATE: TcbStatus.UP_TO_DATE,
    TcbDial.SW_HARDENING_NEEDED: TcbStatus.SW_HARDENING_NEEDED,
    TcbDial.CONFIGURATION_NEEDED: TcbStatus.CONFIGURATION_NEEDED,
    TcbDial.CONFIGURATION_AND_SW_HARDENING_NEEDED: TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
    TcbDial.OUT_OF_DATE: TcbStatus.OUT_OF_DATE,
    TcbDial.OUT_OF_DATE_CONFIGURATION_NEEDED: TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
}


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
@pytest.mark.parametrize("dial", sorted(STATUS_DIALS))
def test_every_tcb_status(tee, dial):
    result = _verify(_platform(tee, tcb=dial))
    assert result.status == STATUS_DIALS[dial]
    assert list(result.advisory_ids) == sorted(set(result.advisory_ids))


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_tcb_not_supported_and_revoked_are_refused(tee):
    assert _refusal(_platform(tee, tcb=TcbDial.NOT_SUPPORTED)) == "tcb.not_supported"
    assert _refusal(_platform(tee, tcb=TcbDial.REVOKED)) == "tcb.revoked"


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_revocations_are_refused(tee):
    assert _refusal(_platform(tee, revoked_pck=True)) == "pck.revoked"
    assert _refusal(_platform(tee, revoked_pck_ca=True)) == "pck.ca_revoked"
    assert _refusal(_platform(tee, revoked_tcb_signing=True)) == "tcb_info.signing_cert_revoked"


def test_processor_ca_platform_verifies():
    result = _verify(_platform(pck_ca="processor"))
    assert result.platform.ca_type == "processor"


def test_debug_enclave_and_td_are_reported():
    assert _verify(_platform("sgx", debug=True)).debug is True
    assert _verify(_platform("tdx", debug=True)).debug is True
    assert _verify(_platform("sgx")).debug is False


def test_qe_out_of_date_converges_per_intel():
    # Intel: ConfigurationNeeded platform + OutOfDate QE = OutOfDateConfigurationNeeded.
    platform = _platform(tcb=TcbDial.CONFIGURATION_NEEDED, qe_status="OutOfDate")
    result = _verify(platform)
    assert result.qe.status == TcbStatus.OUT_OF_DATE
    assert result.status == TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED
    up_to_date = _verify(_platform(qe_status="OutOfDate"))
    assert up_to_date.status == TcbStatus.OUT_OF_DATE


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
@pytest.mark.parametrize("dial", sorted(STATUS_DIALS))
@pytest.mark.parametrize("qe_status", ["UpToDate", "OutOfDate"])
def test_status_convergence_agrees_with_dcap_qvl_0_7(tee, dial, qe_status):
    # dcap.md §2.7 records that dcap-qvl 0.5.2's source merged statuses worst-of
    # (ConfigurationNeeded + QE OutOfDate = OutOfDate). PyPI dcap-qvl 0.7.0 converges like
    # Intel's QVL on every platform/QE combination the simulator can produce, so here the two
    # verifiers must agree exactly, statuses and advisory IDs.
    platform = _platform(tee, tcb=dial, qe_status=qe_status)
    quote = platform.quote(REPORT_DATA)
    bundle = platform.collateral_json(now=NOW)
    at = NOW + timedelta(hours=1)
    report = dcap_qvl.verify_with_root_ca(
        quote,
        dcap_qvl.QuoteCollateralV3.from_json(bundle.decode()),
        platform.root_ca_der(),
        int(at.timestamp()),
    )
    ours = verify_quote(quote, load_collateral_bundle(bundle), trust_anchor=_anchor(), now=at)
    assert (str(ours.status), list(ours.advisory_ids)) == (
        report.status,
        sorted(report.advisory_ids),
    )


def test_revoked_qe_is_refused():
    assert _refusal(_platform(qe_status="Revoked")) == "tcb.revoked"


@pytest.mark.parametrize(
    "dial", [TcbDial.UP_TO_DATE, TcbDial.SW_HARDENING_NEEDED, TcbDial.OUT_OF_DATE]
)
def test_simulated_statuses_agree_with_dcap_qvl(dial):
    platform = _platform("tdx", tcb=dial)
    quote = platform.quote(REPORT_DATA)
    bundle = platform.collateral_json(now=NOW)
    at = NOW + timedelta(hours=1)
    report = dcap_qvl.verify_with_root_ca(
        quote,
        dcap_qvl.QuoteCollateralV3.from_json(bundle.decode()),
        platform.root_ca_der(),
        int(at.timestamp()),
    )
    ours = verify_quote(quote, load_collateral_bundle(bundle), trust_anchor=_anchor(), now=at)
    assert (report.status, sorted(report.advisory_ids)) == (
        str(ours.status),
        list(ours.advisory_ids),
    )


def test_expired_tcb_info_is_refused_or_flagged():
    platform = _platform()
    expired = CollateralDates.expired(NOW)
    fresh = CollateralDates.fresh(NOW)
    collateral = load_collateral_bundle(
        platform.collateral_json_with(dates=fresh, tcb_info_dates=expired)
    )
    with pytest.raises(EvidenceError) as info:
        _verify(platform, collateral)
    assert info.value.code == "collateral.expired"
    assert "TCB info" in info.value.message
    flagged = _verify(platform, collateral, allow_expired_collateral=True)
    assert flagged.collateral_expired is True
    assert flagged.earliest_expiration_date == expired.next_update


def test_expired_qe_identity_and_crls_are_refused():
    platform = _platform("tdx")
    collateral = load_collateral_bundle(
        platform.collateral_json_with(
            dates=CollateralDates.fresh(NOW), qe_identity_dates=CollateralDates.expired(NOW)
        )
    )
    assert _refusal(platform, collateral) == "collateral.expired"
    assert _refusal(platform, platform.collateral(now=NOW, expired=True)) == "collateral.expired"


def _resigned_qe_identity(platform: SimulatedPlatform, text: str) -> Collateral:
    document = json.loads(platform.collateral_json(now=NOW))
    document["qe_identity"] = text
    document["qe_identity_signature"] = _pki().sign_collateral(text.encode()).hex()
    return load_collateral_bundle(json.dumps(document).encode())


def test_qe_identity_of_another_enclave_is_refused():
    platform = _platform("sgx")
    # A validly signed QE identity that describes a different QE (TD QE's signer, id "QE").
    text = build_qe_identity(tee="sgx", qe=TD_QE_IDENTITY, dates=CollateralDates.fresh(NOW))
    assert _refusal(platform, _resigned_qe_identity(platform, text)) == "qe.identity_mismatch"


def test_qe_identity_with_no_level_for_the_qe_is_refused():
    platform = _platform("sgx")
    document = json.loads(
        platform.collateral_json(now=NOW)["qe_identity"]
        if False
        else platform.collateral_json(now=NOW)
    )
    identity = json.loads(document["qe_identity"])
    for level in identity["tcbLevels"]:
        level["tcb"]["isvsvn"] = 200
    text = json.dumps(identity, separators=(",", ":"))
    assert _refusal(platform, _resigned_qe_identity(platform, text)) == "tcb.not_supported"


def _relaunch_collateral(platform: SimulatedPlatform) -> Collateral:
    """Re-sign the platform's TCB info with a newer UpToDate level (TDX component 2 = 2) above
    the platform's launch level, which becomes OutOfDate."""
    document = json.loads(platform.collateral_json(now=NOW))
    info = json.loads(document["tcb_info"])
    launch_level = next(level for level in info["tcbLevels"] if level["tcbStatus"] == "UpToDate")
    newer = json.loads(json.dumps(launch_level))
    newer["tcb"]["tdxtcbcomponents"][2]["svn"] = 2
    launch_level["tcbStatus"] = "OutOfDate"
    launch_level["advisoryIDs"] = ["SANCTUM-SIM-SA-00009"]
    info["tcbLevels"].insert(0, newer)
    text = json.dumps(info, separators=(",", ":"))
    document["tcb_info"] = text
    document["tcb_info_signature"] = _pki().sign_collateral(text.encode()).hex()
    return load_collateral_bundle(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("current_svn", "expected"),
    [(2, TcbStatus.TD_RELAUNCH_ADVISED), (1, TcbStatus.OUT_OF_DATE)],
)
def test_td_relaunch_advised(current_svn, expected):
    # Launched on TDX TCB component 2 = 1 (now OutOfDate); if the TD now runs at 2 (UpToDate,
    # TEE_TCB_SVN2 of a TD report 1.5), Intel reports TDRelaunchAdvised.
    launch = bytes([3, 1, 1] + [0] * 13)
    current = bytes([3, 1, current_svn] + [0] * 13)
    tcb = PlatformTcb(tee_tcb_svn=launch, tee_tcb_svn2=current)
    platform = _platform("tdx", quote_version=5, platform_tcb=tcb)
    result = _verify(platform, _relaunch_collateral(platform))
    assert result.status == expected
    assert result.advisory_ids == ("SANCTUM-SIM-SA-00009",)
    assert result.platform_status == TcbStatus.OUT_OF_DATE


def test_current_tcb_below_every_level_is_refused():
    # QVL evaluates TEE_TCB_SVN2 like the launch TCB and refuses when no level covers it.
    launch = bytes([3, 1, 2] + [0] * 13)
    current = bytes([0, 1, 0] + [0] * 13)
    tcb = PlatformTcb(tee_tcb_svn=launch, tee_tcb_svn2=current)
    platform = _platform("tdx", quote_version=5, platform_tcb=tcb)
    assert _refusal(platform, _relaunch_collateral(platform)) == "tcb.not_supported"


def test_td_report_10_is_not_relaunch_evaluated():
    launch = bytes([3, 1, 1] + [0] * 13)
    platform = _platform("tdx", quote_version=4, platform_tcb=PlatformTcb(tee_tcb_svn=launch))
    assert _verify(platform, _relaunch_collateral(platform)).status == TcbStatus.OUT_OF_DATE


def test_cached_verifier_matches_cold_on_simulated_platforms():
    verifier = Verifier(_anchor())
    for dial in STATUS_DIALS:
        platform = _platform("tdx", tcb=dial)
        collateral = platform.collateral(now=NOW)
        quote = platform.quote(REPORT_DATA)
        at = NOW + timedelta(hours=1)
        cold = verify_quote(quote, collateral, trust_anchor=_anchor(), now=at)
        assert verifier.verify(quote, collateral, now=at) == cold
        assert verifier.verify(quote, collateral, now=at) == cold


# Known divergences from dcap-qvl (dcap.md §2.7), shown on crafted, validly signed collateral.


def _resigned_tcb_info(platform: SimulatedPlatform, change) -> tuple[bytes, Collateral]:
    document = json.loads(platform.collateral_json(now=NOW))
    info = json.loads(document["tcb_info"])
    change(info)
    text = json.dumps(info, separators=(",", ":"))
    document["tcb_info"] = text
    document["tcb_info_signature"] = _pki().sign_collateral(text.encode()).hex()
    bundle = json.dumps(document).encode()
    return bundle, load_collateral_bundle(bundle)


def _peer(platform: SimulatedPlatform, quote: bytes, bundle: bytes):
    try:
        return dcap_qvl.verify_with_root_ca(
            quote,
            dcap_qvl.QuoteCollateralV3.from_json(bundle.decode()),
            platform.root_ca_der(),
            int((NOW + timedelta(hours=1)).timestamp()),
        )
    except ValueError as error:
        return str(error)


def test_pce_id_divergence():
    # Intel's QVL checks the PCK certificate's PCE-ID against tcbInfo.pceId; dcap-qvl checks
    # only the FMSPC. A TCB info for another PCE is not about this platform: Sanctum refuses.
    platform = _platform("sgx")
    bundle, collateral = _resigned_tcb_info(platform, lambda info: info.update(pceId="0100"))
    quote = platform.quote(REPORT_DATA)
    peer = _peer(platform, quote, bundle)
    assert not isinstance(peer, str)
    assert peer.status == "UpToDate"
    with pytest.raises(EvidenceError) as error:
        verify_quote(quote, collateral, trust_anchor=_anchor(), now=NOW + timedelta(hours=1))
    assert error.value.code == "tcb_info.pceid_mismatch"


def test_tdx_component_index_rule():
    # With a TDX module version > 0, TEE_TCB_SVN[0..1] are the module's SVN and version and
    # Intel compares TDX components from index 2 (the module has its own identity levels).
    # dcap.md §2.7 notes dcap-qvl 0.5.2's source compared all 16; PyPI 0.7.0 follows Intel,
    # so here the two agree (a level demanding module SVN 200 in component 0 still matches).
    platform = _platform("tdx")

    def raise_component_0(info):
        for level in info["tcbLevels"]:
            level["tcb"]["tdxtcbcomponents"][0]["svn"] = 200

    bundle, collateral = _resigned_tcb_info(platform, raise_component_0)
    quote = platform.quote(REPORT_DATA)
    ours = verify_quote(quote, collateral, trust_anchor=_anchor(), now=NOW + timedelta(hours=1))
    assert ours.status == TcbStatus.UP_TO_DATE
    peer = _peer(platform, quote, bundle)
    assert not isinstance(peer, str), peer
    assert peer.status == "UpToDate"


def test_seam_attributes_divergence():
    # Intel requires SEAMATTRIBUTES to be zero and equal to the module identity's attributes;
    # dcap-qvl compares under attributesMask. A TCB info whose module identity lists the TD's
    # non-zero SEAM attributes passes dcap-qvl; Sanctum refuses a module running with non-zero
    # SEAM attributes, as Intel's QVL does.
    identity = SimTdIdentity(seam_attributes=bytes([1, 0, 0, 0, 0, 0, 0, 0]))
    platform = _platform("tdx", identity=identity)

    def list_attributes(info):
        info["tdxModule"]["attributes"] = "0100000000000000"
        for module in info.get("tdxModuleIdentities", []):
            module["attributes"] = "0100000000000000"

    bundle, collateral = _resigned_tcb_info(platform, list_attributes)
    quote = platform.quote(REPORT_DATA)
    with pytest.raises(EvidenceError) as error:
        verify_quote(quote, collateral, trust_anchor=_anchor(), now=NOW + timedelta(hours=1))
    assert error.value.code == "tdx_module.mismatch"
    peer = _peer(platform, quote, bundle)
    assert not isinstance(peer, str), peer
    assert peer.status == "UpToDate"


def test_missing_module_identity_is_a_module_mismatch():
    platform = _platform("tdx")
    _, collateral = _resigned_tcb_info(platform, lambda info: info.update(tdxModuleIdentities=[]))
    with pytest.raises(EvidenceError) as error:
        _verify(platform, collateral)
    assert error.value.code == "tdx_module.mismatch"
