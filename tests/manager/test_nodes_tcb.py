"""The pure core of the node re-check: a node's recorded platform TCB, fresh collateral verified
under a trust anchor, and the re-appraisal with Intel's TCB evaluation and the node policy."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanctum.attestation.collateral import Collateral
from sanctum.attestation.collateral_verify import VerifiedCollateral
from sanctum.attestation.tcb import TcbStatus
from sanctum.attestation.trust import TrustAnchor
from sanctum.errors import EvidenceError, UnavailableError, UsageError
from sanctum.manager.node_tcb import (
    NodePlatformTcb,
    NodePolicy,
    platform_tcb_from_quote,
    reappraise_node,
    refuse_collateral_rollback,
    verify_node_collateral,
)
from sanctum.platforms.simulated import (
    PlatformTcb,
    SimulatedPlatform,
    SimulationPki,
    TcbDial,
    load_or_create_simulation_pki,
)

START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
LATER = START + dt.timedelta(days=3)
ALLOW = NodePolicy(allow_simulated=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> SimulationPki:
    return load_or_create_simulation_pki(tmp_path_factory.mktemp("pki") / "simulation", now=START)


@pytest.fixture(scope="module")
def anchor(pki) -> TrustAnchor:
    return TrustAnchor.from_bytes(pki.root_der(), simulated=True)


def _platform(pki: SimulationPki, **options) -> SimulatedPlatform:
    options.setdefault("tee", "sgx")
    options.setdefault("seed", b"node-1")
    return SimulatedPlatform(pki, now=START, **options)


def _recorded(pki, anchor, **options) -> NodePlatformTcb:
    platform = _platform(pki, **options)
    return platform_tcb_from_quote(platform.quote(b"join"), anchor)


def _fresh(pki, anchor, *, now=LATER, **options) -> VerifiedCollateral:
    platform = _platform(pki, **options)
    return verify_node_collateral(platform.collateral(now=now), anchor, now=now)


EXPECTED = [
    (TcbDial.UP_TO_DATE, TcbStatus.UP_TO_DATE, None),
    (TcbDial.SW_HARDENING_NEEDED, TcbStatus.SW_HARDENING_NEEDED, None),
    (TcbDial.CONFIGURATION_NEEDED, TcbStatus.CONFIGURATION_NEEDED, "node.tcb_status_rejected"),
    (TcbDial.OUT_OF_DATE, TcbStatus.OUT_OF_DATE, "node.tcb_status_rejected"),
    (
        TcbDial.OUT_OF_DATE_CONFIGURATION_NEEDED,
        TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
        "node.tcb_status_rejected",
    ),
    (TcbDial.REVOKED, TcbStatus.REVOKED, "node.tcb_status_rejected"),
    (TcbDial.NOT_SUPPORTED, None, "tcb.not_supported"),
]


@pytest.mark.parametrize(("dial", "status", "code"), EXPECTED)
def test_new_tcb_info_decides_the_node_status(pki, anchor, dial, status, code):
    recorded = _recorded(pki, anchor)
    result = reappraise_node(recorded, _fresh(pki, anchor, tcb=dial), ALLOW, now=LATER)
    assert result.status == status
    assert result.code == code
    assert result.acceptable is (code is None)
    assert (result.reason is None) is (code is None)
    assert result.tcb_evaluation_data_number == 1
    if status is not None:
        assert result.tcb_date is not None


def test_advisories_come_from_the_matched_levels(pki, anchor):
    recorded = _recorded(pki, anchor)
    result = reappraise_node(
        recorded, _fresh(pki, anchor, tcb=TcbDial.OUT_OF_DATE), ALLOW, now=LATER
    )
    assert result.advisory_ids == ("SANCTUM-SIM-SA-00003", "SANCTUM-SIM-SA-00004")


def test_an_out_of_date_quoting_enclave_makes_the_node_out_of_date(pki, anchor):
    recorded = _recorded(pki, anchor)
    fresh = _fresh(pki, anchor, qe_status="OutOfDate")
    result = reappraise_node(recorded, fresh, ALLOW, now=LATER)
    assert result.status == TcbStatus.OUT_OF_DATE
    assert "SANCTUM-SIM-SA-00006" in result.advisory_ids
    assert result.code == "node.tcb_status_rejected"


def test_a_policy_can_accept_more_statuses(pki, anchor):
    recorded = _recorded(pki, anchor)
    policy = NodePolicy(
        accepted_tcb_statuses=frozenset({TcbStatus.UP_TO_DATE, TcbStatus.CONFIGURATION_NEEDED}),
        allow_simulated=True,
    )
    fresh = _fresh(pki, anchor, tcb=TcbDial.CONFIGURATION_NEEDED)
    assert reappraise_node(recorded, fresh, policy, now=LATER).acceptable


def test_simulated_evidence_needs_the_policy(pki, anchor):
    recorded = _recorded(pki, anchor)
    result = reappraise_node(recorded, _fresh(pki, anchor), NodePolicy(), now=LATER)
    assert result.status == TcbStatus.UP_TO_DATE
    assert (result.acceptable, result.code) == (False, "attest.simulated_not_allowed")


def test_a_revoked_pck_certificate_is_unacceptable(pki, anchor):
    recorded = _recorded(pki, anchor)
    result = reappraise_node(recorded, _fresh(pki, anchor, revoked_pck=True), ALLOW, now=LATER)
    assert (result.acceptable, result.code) == (False, "pck.revoked")
    # Another platform's revocation does not concern this node.
    other = _fresh(pki, anchor, revoked_pck=True, seed=b"another")
    assert reappraise_node(recorded, other, ALLOW, now=LATER).acceptable


def test_a_revoked_pck_ca_is_unacceptable(pki, anchor):
    recorded = _recorded(pki, anchor)
    result = reappraise_node(recorded, _fresh(pki, anchor, revoked_pck_ca=True), ALLOW, now=LATER)
    assert (result.acceptable, result.code) == (False, "pck.ca_revoked")


def test_tdx_nodes_are_evaluated_with_their_module(pki, anchor):
    tcb = PlatformTcb(tee_tcb_svn2=bytes([3, 1, 3] + [0] * 13))
    options = {"tee": "tdx", "quote_version": 5, "platform_tcb": tcb, "seed": b"td"}
    recorded = _recorded(pki, anchor, **options)
    assert recorded.tee == "tdx"
    assert recorded.tee_tcb_svn2 == tcb.tee_tcb_svn2
    current = reappraise_node(recorded, _fresh(pki, anchor, **options), ALLOW, now=LATER)
    assert (current.status, current.acceptable) == (TcbStatus.UP_TO_DATE, True)
    behind = _fresh(pki, anchor, tcb=TcbDial.OUT_OF_DATE, **options)
    result = reappraise_node(recorded, behind, ALLOW, now=LATER)
    assert result.status == TcbStatus.TD_RELAUNCH_ADVISED
    assert result.code == "node.tcb_status_rejected"


def test_collateral_of_another_platform_cannot_judge_the_node(pki, anchor):
    recorded = _recorded(pki, anchor)
    other = _fresh(pki, anchor, fmspc=bytes.fromhex("53494d0000aa"))
    with pytest.raises(EvidenceError) as raised:
        reappraise_node(recorded, other, ALLOW, now=LATER)
    assert raised.value.code == "tcb_info.fmspc_mismatch"
    tdx = _fresh(pki, anchor, tee="tdx")
    with pytest.raises(EvidenceError) as raised:
        reappraise_node(recorded, tdx, ALLOW, now=LATER)
    assert raised.value.code == "tcb_info.tee_mismatch"
    processor = _fresh(pki, anchor, pck_ca="processor")
    with pytest.raises(EvidenceError) as raised:
        reappraise_node(recorded, processor, ALLOW, now=LATER)
    assert raised.value.code == "crl.invalid"


def test_stale_collateral_is_refused(pki, anchor):
    platform = _platform(pki)
    with pytest.raises(EvidenceError) as raised:
        verify_node_collateral(platform.collateral(now=LATER, expired=True), anchor, now=LATER)
    assert raised.value.code == "collateral.expired"
    # Verified fresh, judged again later when it has expired.
    fresh = _fresh(pki, anchor)
    with pytest.raises(EvidenceError) as raised:
        reappraise_node(_recorded(pki, anchor), fresh, ALLOW, now=LATER + dt.timedelta(days=40))
    assert raised.value.code == "collateral.expired"


def test_older_tcb_info_than_the_node_was_judged_with_is_refused(pki, anchor):
    recorded = _recorded(pki, anchor)
    fresh = _fresh(pki, anchor, tcb=TcbDial.OUT_OF_DATE)
    assert fresh.tcb_info.tcb_evaluation_data_number == 1
    with pytest.raises(UnavailableError) as raised:
        reappraise_node(recorded, fresh, ALLOW, now=LATER, highest_tcb_evaluation_data_number=2)
    assert raised.value.code == "collateral.rollback"
    for seen in (None, 0, 1):
        result = reappraise_node(
            recorded, fresh, ALLOW, now=LATER, highest_tcb_evaluation_data_number=seen
        )
        assert (result.status, result.tcb_evaluation_data_number) == (TcbStatus.OUT_OF_DATE, 1)


def test_tampered_or_foreign_collateral_is_refused(pki, anchor, tmp_path):
    collateral = _platform(pki, tcb=TcbDial.OUT_OF_DATE).collateral(now=LATER)
    honest = _platform(pki).collateral(now=LATER)
    # The out-of-date TCB info with the up-to-date one's signature.
    forged = dataclasses.replace(collateral, tcb_info_signature=honest.tcb_info_signature)
    with pytest.raises(EvidenceError) as raised:
        verify_node_collateral(forged, anchor, now=LATER)
    assert raised.value.code == "tcb_info.signature_invalid"
    foreign_pki = load_or_create_simulation_pki(tmp_path / "other", now=START)
    foreign = _platform(foreign_pki).collateral(now=LATER)
    with pytest.raises(EvidenceError) as raised:
        verify_node_collateral(foreign, anchor, now=LATER)
    assert raised.value.code == "crl.invalid"
    signer_revoked = _platform(pki, revoked_tcb_signing=True).collateral(now=LATER)
    with pytest.raises(EvidenceError) as raised:
        verify_node_collateral(signer_revoked, anchor, now=LATER)
    assert raised.value.code == "tcb_info.signing_cert_revoked"


def test_quotes_without_a_chain_need_the_platforms_own_chain(pki, anchor):
    platform = _platform(pki, certification_data_type=3)
    quote = platform.quote(b"join")
    with pytest.raises(EvidenceError) as raised:
        platform_tcb_from_quote(quote, anchor)
    assert raised.value.code == "quote.pck_chain_missing"
    chain = platform.collateral(now=START).pck_certificate_chain
    assert chain is not None
    recorded = platform_tcb_from_quote(quote, anchor, pck_chain_pem=chain)
    assert recorded == _recorded(pki, anchor)  # The same platform as the type-5 quotes.
    newer = PlatformTcb(pce_svn=14)
    other = _platform(pki, certification_data_type=3, platform_tcb=newer, seed=b"n2")
    with pytest.raises(EvidenceError) as raised:
        platform_tcb_from_quote(
            quote, anchor, pck_chain_pem=other.collateral(now=START).pck_certificate_chain
        )
    assert raised.value.code == "pck.mismatch"


def test_a_chain_under_another_root_is_refused(pki, anchor, tmp_path):
    foreign = _platform(load_or_create_simulation_pki(tmp_path / "other", now=START))
    with pytest.raises(EvidenceError) as raised:
        platform_tcb_from_quote(foreign.quote(b"join"), anchor)
    assert raised.value.code == "pck.chain_invalid"


def test_naive_times_are_refused(pki, anchor):
    collateral: Collateral = _platform(pki).collateral(now=LATER)
    with pytest.raises(UsageError):
        verify_node_collateral(collateral, anchor, now=LATER.replace(tzinfo=None))
    with pytest.raises(UsageError):
        reappraise_node(
            _recorded(pki, anchor), _fresh(pki, anchor), ALLOW, now=LATER.replace(tzinfo=None)
        )


def test_the_recorded_tcb_round_trips_through_json(pki, anchor):
    for options in ({}, {"tee": "tdx", "quote_version": 5, "seed": b"td"}):
        recorded = _recorded(pki, anchor, **options)
        assert NodePlatformTcb.from_json(recorded.to_json()) == recorded


@given(
    field=st.sampled_from(
        [
            "version",
            "tee",
            "fmspc",
            "ca_type",
            "cpu_svn_components",
            "pce_svn",
            "tee_tcb_svn",
            "pck_serial",
        ]
    ),
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 70000),
        st.text(alphabet="0123456789abcdefABX ", max_size=12),
        st.lists(st.integers(-1, 300), max_size=17),
    ),
)
def test_a_damaged_record_is_refused_not_misread(field, value):
    recorded = NodePlatformTcb(
        tee="sgx",
        fmspc=bytes(6),
        pce_id=bytes(2),
        ppid=bytes(16),
        ca_type="platform",
        cpu_svn_components=(1,) * 16,
        pce_svn=2,
        qe_isv_svn=3,
        tee_tcb_svn=None,
        tee_tcb_svn2=None,
        pck_serial=5,
        pck_issuer=b"\x30\x00",
        pck_ca_serial=6,
    )
    written = {**recorded.to_json(), field: value}
    try:
        parsed = NodePlatformTcb.from_json(written)
    except EvidenceError as error:
        code = error.code
    else:
        # A record is read exactly as written, never coerced into something else.
        code = None
        assert parsed.to_json() == written
    assert code in {None, "node.tcb_malformed"}


def test_an_older_qe_identity_than_the_node_was_judged_with_is_refused(pki, anchor):
    recorded = _recorded(pki, anchor)
    fresh = _fresh(pki, anchor, tcb=TcbDial.OUT_OF_DATE)
    assert fresh.qe_identity.tcb_evaluation_data_number == 1
    with pytest.raises(UnavailableError) as raised:
        reappraise_node(recorded, fresh, ALLOW, now=LATER, highest_qe_tcb_evaluation_data_number=2)
    assert raised.value.code == "collateral.rollback"
    assert raised.value.details["part"] == "qe_identity"
    assert "QE identity" in raised.value.message
    result = reappraise_node(
        recorded,
        fresh,
        ALLOW,
        now=LATER,
        highest_tcb_evaluation_data_number=1,
        highest_qe_tcb_evaluation_data_number=1,
    )
    assert (result.tcb_evaluation_data_number, result.qe_tcb_evaluation_data_number) == (1, 1)
    assert result.status == TcbStatus.OUT_OF_DATE


@pytest.mark.parametrize(
    ("tcb", "qe", "highest_tcb", "highest_qe", "part"),
    [
        (3, 3, None, None, None),
        (3, 3, 3, 3, None),
        (4, 2, 3, None, None),
        (2, 9, 3, 1, "tcb_info"),
        (5, 2, 3, 3, "qe_identity"),
        (2, 2, 3, 3, "tcb_info"),  # The TCB info is named first.
    ],
)
def test_refuse_collateral_rollback(tcb, qe, highest_tcb, highest_qe, part):
    if part is None:
        refuse_collateral_rollback(tcb, qe, highest_tcb=highest_tcb, highest_qe=highest_qe)
        return
    with pytest.raises(UnavailableError) as raised:
        refuse_collateral_rollback(tcb, qe, highest_tcb=highest_tcb, highest_qe=highest_qe)
    assert (raised.value.code, raised.value.details["part"]) == ("collateral.rollback", part)
