from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from sanctum.attestation.result import (
    PlatformFacts,
    QeFacts,
    SgxEnclaveIdentity,
    TdIdentity,
    VerifiedQuote,
)
from sanctum.attestation.tcb import TcbStatus
from sanctum.errors import UsageError
from sanctum.manager.ca import decode_attestation_claims, encode_attestation_claims
from sanctum.manager.policy import (
    AttestationPolicy,
    BuildRef,
    PolicyRefusedError,
    attestation_claims,
    evaluate,
    workload_result,
)
from sanctum.manager.tokens import ear_claims

MRENCLAVE = bytes(range(32))
MRSIGNER = bytes(range(32, 64))
NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def _sgx_identity(**overrides: object) -> SgxEnclaveIdentity:
    fields: dict[str, object] = {
        "mrenclave": MRENCLAVE,
        "mrsigner": MRSIGNER,
        "isv_prod_id": 7,
        "isv_svn": 3,
        "attributes": bytes(16),
        "debug": False,
        "misc_select": 0,
        "cpu_svn": bytes(16),
        "config_id": bytes(64),
        "config_svn": 0,
        "isv_ext_prod_id": bytes(16),
        "isv_family_id": bytes(16),
        "report_data": bytes(64),
    }
    fields.update(overrides)
    return SgxEnclaveIdentity(**fields)  # type: ignore[arg-type]


def _td_identity() -> TdIdentity:
    z48 = bytes(48)
    return TdIdentity(
        mr_td=b"\x0d" * 48,
        mr_config_id=z48,
        mr_owner=z48,
        mr_owner_config=z48,
        rtmr0=b"\x01" * 48,
        rtmr1=b"\x02" * 48,
        rtmr2=z48,
        rtmr3=z48,
        td_attributes=bytes(8),
        debug=False,
        xfam=bytes(8),
        mr_seam=z48,
        mr_signer_seam=z48,
        seam_attributes=bytes(8),
        tee_tcb_svn=bytes(16),
        tee_tcb_svn2=None,
        mr_servicetd=None,
        report_data=bytes(64),
    )


def _verified(**overrides: object) -> VerifiedQuote:
    fields: dict[str, object] = {
        "tee": "sgx",
        "version": 3,
        "status": TcbStatus.UP_TO_DATE,
        "advisory_ids": (),
        "platform_status": TcbStatus.UP_TO_DATE,
        "tdx_module_status": None,
        "tdx_module_advisory_ids": (),
        "tcb_date": datetime(2025, 11, 12, tzinfo=UTC),
        "tcb_evaluation_data_number": 17,
        "collateral_expired": False,
        "earliest_issue_date": datetime(2026, 11, 1, tzinfo=UTC),
        "latest_issue_date": datetime(2026, 11, 20, tzinfo=UTC),
        "earliest_expiration_date": datetime(2026, 12, 20, tzinfo=UTC),
        "verified_at": NOW,
        "platform": PlatformFacts(
            fmspc=bytes.fromhex("00906ed50000"),
            pce_id=b"\x00\x00",
            ppid=bytes(16),
            sgx_type="Standard",
            ca_type="processor",
            cpu_svn=bytes(16),
            pce_svn=13,
            platform_instance_id=None,
            dynamic_platform=None,
            cached_keys=None,
            smt_enabled=None,
        ),
        "qe": QeFacts(
            status=TcbStatus.UP_TO_DATE,
            isv_svn=8,
            isv_prod_id=1,
            mrsigner=bytes(32),
            advisory_ids=(),
            tcb_date=datetime(2025, 11, 12, tzinfo=UTC),
            identity_id="QE",
            tcb_evaluation_data_number=17,
        ),
        "identity": _sgx_identity(),
        "simulated": False,
        "pck_crl_number": 1,
        "root_ca_crl_number": 1,
    }
    fields.update(overrides)
    return VerifiedQuote(**fields)  # type: ignore[arg-type]


BUILD = BuildRef(id="build-1", tee="sgx", measurement=MRENCLAVE, signer=MRSIGNER)
POLICY = AttestationPolicy(isvprodid=7, min_isvsvn=2)


def _codes(appraisal) -> list[str]:  # type: ignore[no-untyped-def]
    return [check.code for check in appraisal.failures]


def test_accepts_a_good_quote_and_lists_every_check() -> None:
    appraisal = evaluate(POLICY, _verified(), allowlisted_builds=[BUILD])
    assert appraisal.accepted
    appraisal.raise_if_refused()
    assert appraisal.build == BUILD
    assert [c.name for c in appraisal.checks] == [
        "evidence.simulated",
        "enclave.debug",
        "tcb.status",
        "tcb.advisories_rejected",
        "tcb.advisories_accepted",
        "qe.status",
        "collateral.fresh",
        "build.allowlisted",
        "enclave.isvprodid",
        "enclave.isvsvn",
        "node.registered",
    ]
    outcomes = {c.name: c.outcome for c in appraisal.checks}
    assert outcomes["tcb.advisories_accepted"] == "skip"
    assert outcomes["node.registered"] == "skip"
    assert appraisal.vector.status() == "affirming"
    assert appraisal.to_dict()["ear_status"] == "affirming"


@pytest.mark.parametrize(
    ("quote", "policy", "builds", "code"),
    [
        (_verified(simulated=True), POLICY, [BUILD], "attest.simulated_not_allowed"),
        (
            _verified(identity=_sgx_identity(debug=True)),
            POLICY,
            [BUILD],
            "attest.debug_not_allowed",
        ),
        (_verified(status=TcbStatus.OUT_OF_DATE), POLICY, [BUILD], "attest.tcb_status_rejected"),
        (
            _verified(status=TcbStatus.SW_HARDENING_NEEDED, advisory_ids=("INTEL-SA-00334",)),
            dataclasses.replace(POLICY, rejected_advisory_ids=frozenset({"INTEL-SA-00334"})),
            [BUILD],
            "attest.advisory_rejected",
        ),
        (
            _verified(
                status=TcbStatus.SW_HARDENING_NEEDED,
                advisory_ids=("INTEL-SA-00334", "INTEL-SA-00615"),
            ),
            dataclasses.replace(POLICY, accepted_advisory_ids=frozenset({"INTEL-SA-00334"})),
            [BUILD],
            "attest.advisory_not_accepted",
        ),
        (
            _verified(qe=dataclasses.replace(_verified().qe, status=TcbStatus.OUT_OF_DATE)),
            POLICY,
            [BUILD],
            "attest.qe_status_rejected",
        ),
        (_verified(collateral_expired=True), POLICY, [BUILD], "attest.collateral_expired"),
        (_verified(), POLICY, [], "attest.build_not_allowlisted"),
        (
            _verified(),
            POLICY,
            [dataclasses.replace(BUILD, signer=bytes(32))],
            "attest.build_not_allowlisted",
        ),
        (
            _verified(identity=_sgx_identity(isv_prod_id=8)),
            POLICY,
            [BUILD],
            "attest.isvprodid_mismatch",
        ),
        (
            _verified(identity=_sgx_identity(isv_svn=1)),
            POLICY,
            [BUILD],
            "attest.isvsvn_too_low",
        ),
        (
            _verified(),
            dataclasses.replace(POLICY, require_registered_node=True),
            [BUILD],
            "attest.node_not_registered",
        ),
    ],
)
def test_each_refusal_has_its_code(
    quote: VerifiedQuote, policy: AttestationPolicy, builds: list[BuildRef], code: str
) -> None:
    appraisal = evaluate(policy, quote, allowlisted_builds=builds)
    assert _codes(appraisal) == [code]
    with pytest.raises(PolicyRefusedError) as caught:
        appraisal.raise_if_refused()
    assert caught.value.code == code
    assert appraisal.vector.status() == "contraindicated" or code in {
        "attest.build_not_allowlisted",
        "attest.node_not_registered",
    }


def test_every_failure_is_reported_not_only_the_first() -> None:
    quote = _verified(
        simulated=True,
        status=TcbStatus.OUT_OF_DATE,
        identity=_sgx_identity(debug=True, isv_svn=0),
    )
    appraisal = evaluate(POLICY, quote, allowlisted_builds=[])
    assert _codes(appraisal) == [
        "attest.simulated_not_allowed",
        "attest.debug_not_allowed",
        "attest.tcb_status_rejected",
        "attest.build_not_allowlisted",
        "attest.isvsvn_too_low",
    ]
    with pytest.raises(PolicyRefusedError) as caught:
        appraisal.raise_if_refused()
    assert caught.value.code == "attest.simulated_not_allowed"
    assert caught.value.details["failed"] == _codes(appraisal)


def test_unsafe_switches_allow_but_say_so() -> None:
    policy = dataclasses.replace(
        POLICY,
        unsafe_allow_debug=True,
        unsafe_allow_simulated=True,
        unsafe_allow_expired_collateral=True,
    )
    quote = _verified(simulated=True, collateral_expired=True, identity=_sgx_identity(debug=True))
    appraisal = evaluate(policy, quote, allowlisted_builds=[BUILD])
    assert appraisal.accepted
    reasons = " ".join(c.reason for c in appraisal.checks)
    assert "unsafe_allow_simulated" in reasons
    assert "unsafe_allow_debug" in reasons
    assert "unsafe_allow_expired_collateral" in reasons
    # Simulated evidence is contraindicated in the token even when issuance is allowed.
    assert appraisal.vector.status() == "contraindicated"
    assert appraisal.vector.hardware == 97


def test_revoked_build_is_reported_as_revoked() -> None:
    appraisal = evaluate(POLICY, _verified(), allowlisted_builds=[], revoked_builds=[BUILD])
    assert _codes(appraisal) == ["attest.build_revoked"]
    assert appraisal.vector.executables == 96


def test_node_registration_states() -> None:
    policy = dataclasses.replace(POLICY, require_registered_node=True)
    assert evaluate(policy, _verified(), allowlisted_builds=[BUILD], node_registered=True).accepted
    for state in (False, None):
        appraisal = evaluate(policy, _verified(), allowlisted_builds=[BUILD], node_registered=state)
        assert _codes(appraisal) == ["attest.node_not_registered"]


def test_sw_hardening_is_accepted_by_default_with_a_warning_vector() -> None:
    quote = _verified(status=TcbStatus.SW_HARDENING_NEEDED, advisory_ids=("INTEL-SA-00615",))
    appraisal = evaluate(POLICY, quote, allowlisted_builds=[BUILD])
    assert appraisal.accepted
    assert appraisal.vector.status() == "warning"
    assert appraisal.vector.hardware == 32


def test_tdx_quote() -> None:
    quote = _verified(tee="tdx", version=4, identity=_td_identity())
    build = BuildRef(
        id="td-1", tee="tdx", measurement=b"\x0d" * 48, rtmrs=(b"\x01" * 48, None, None, None)
    )
    appraisal = evaluate(POLICY, quote, allowlisted_builds=[build])
    assert appraisal.accepted
    assert {c.name: c.outcome for c in appraisal.checks}["enclave.isvsvn"] == "skip"
    other = dataclasses.replace(build, rtmrs=(b"\x09" * 48,))
    assert not evaluate(POLICY, quote, allowlisted_builds=[other]).accepted
    # An SGX build with the same bytes never matches a TDX quote.
    assert not evaluate(POLICY, quote, allowlisted_builds=[BUILD]).accepted
    claims = attestation_claims(quote)
    assert claims.tee == "tdx"
    assert claims.measurement == b"\x0d" * 48
    result = workload_result(quote, appraisal, app="a", build="td-1")
    assert result.isvsvn is None
    assert result.measurements["rtmr0"] == "01" * 48


def test_policy_hash_is_canonical_and_sensitive() -> None:
    a = AttestationPolicy(rejected_advisory_ids=frozenset({"B", "A"}), isvprodid=1, min_isvsvn=2)
    b = AttestationPolicy(rejected_advisory_ids=frozenset({"A", "B"}), isvprodid=1, min_isvsvn=2)
    assert a.policy_hash() == b.policy_hash()
    assert len(a.policy_hash()) == 64
    assert json.loads(a.canonical_json())["rejected_advisory_ids"] == ["A", "B"]
    assert (
        a.canonical_json()
        == json.dumps(
            json.loads(a.canonical_json()), sort_keys=True, separators=(",", ":")
        ).encode()
    )
    for changed in (
        dataclasses.replace(a, unsafe_allow_debug=True),
        dataclasses.replace(a, min_isvsvn=3),
        dataclasses.replace(a, accepted_advisory_ids=frozenset()),
        dataclasses.replace(a, accepted_tcb_statuses=frozenset({TcbStatus.UP_TO_DATE})),
    ):
        assert changed.policy_hash() != a.policy_hash()


def test_policy_dict_round_trip_and_validation() -> None:
    policy = AttestationPolicy(
        accepted_advisory_ids=frozenset({"INTEL-SA-1"}),
        min_qe_status=TcbStatus.OUT_OF_DATE,
        unsafe_allow_simulated=True,
        isvprodid=9,
    )
    assert AttestationPolicy.from_dict(policy.to_dict()) == policy
    assert AttestationPolicy.from_dict({}) == AttestationPolicy()
    defaults = AttestationPolicy()
    assert defaults.accepted_tcb_statuses == {TcbStatus.UP_TO_DATE, TcbStatus.SW_HARDENING_NEEDED}
    assert not defaults.unsafe_allow_debug
    assert not defaults.unsafe_allow_simulated
    bads: list[dict[str, object]] = [
        {"surprise": 1},
        {"accepted_tcb_statuses": ["Fine"]},
        {"accepted_tcb_statuses": ["Revoked"]},
        {"accepted_tcb_statuses": []},
        {"unsafe_allow_debug": "yes"},
        {"min_isvsvn": -1},
        {"isvprodid": True},
        {"version": 2},
        {"rejected_advisory_ids": "INTEL-SA-1"},
    ]
    for bad in bads:
        with pytest.raises(UsageError) as caught:
            AttestationPolicy.from_dict(bad)
        assert caught.value.code == "policy.invalid"


def test_claims_and_token_input_from_a_verified_quote() -> None:
    quote = _verified(status=TcbStatus.SW_HARDENING_NEEDED, advisory_ids=("INTEL-SA-00615",))
    appraisal = evaluate(POLICY, quote, allowlisted_builds=[BUILD])
    claims = attestation_claims(quote)
    assert claims.measurement == MRENCLAVE
    assert claims.tcb_status == "SWHardeningNeeded"
    assert decode_attestation_claims(encode_attestation_claims(claims)) == claims
    result = workload_result(
        quote, appraisal, app="bank", build="build-1", nonce=b"n" * 32, certificate_serial=5
    )
    body = ear_claims(result, issuer="m", now=NOW, ttl=timedelta(minutes=1), token_id="t")
    verifier = body["submods"]["sgx-enclave"]["ear_verifier_claims"]
    assert verifier["tcb_status"] == "SWHardeningNeeded"
    assert body["submods"]["sgx-enclave"]["ear_appraisal_policy_ids"] == [
        f"urn:sanctum:policy:sha256:{POLICY.policy_hash()}"
    ]
    assert body["ear_status"] == "warning"


def test_build_ref_from_stored_hex() -> None:
    build = BuildRef.from_hex("b1", "sgx", MRENCLAVE.hex(), MRSIGNER.hex())
    assert build == BUILD.__class__("b1", "sgx", MRENCLAVE, MRSIGNER)
    assert evaluate(POLICY, _verified(), allowlisted_builds=[build]).accepted
    td = BuildRef.from_hex("t", "tdx", "0d" * 48, None, ["01" * 48, None])
    assert td.rtmrs == (b"\x01" * 48, None)
    for bad in (("x", "sev", "00"), ("x", "sgx", "zz")):
        with pytest.raises(UsageError) as caught:
            BuildRef.from_hex(*bad)
        assert caught.value.code == "policy.build_invalid"


def test_loosening_changes_names_every_loosened_field():
    from sanctum.manager.policy import loosening_changes  # noqa: PLC0415

    base = AttestationPolicy.from_dict(
        {
            "accepted_advisory_ids": ["INTEL-SA-00001"],
            "require_registered_node": True,
            "min_tcb_evaluation_data_number": 17,
            "isvprodid": 3,
            "min_isvsvn": 2,
        }
    )
    same = AttestationPolicy.from_dict(base.to_dict())
    assert loosening_changes(base, same) == ()
    tighter = AttestationPolicy.from_dict(
        {
            **base.to_dict(),
            "accepted_tcb_statuses": ["UpToDate"],
            "accepted_advisory_ids": [],
            "rejected_advisory_ids": ["INTEL-SA-00002"],
            "min_tcb_evaluation_data_number": 18,
            "min_isvsvn": 4,
        }
    )
    assert loosening_changes(base, tighter) == ()
    looser = AttestationPolicy.from_dict(
        {
            **base.to_dict(),
            "accepted_advisory_ids": None,
            "require_registered_node": False,
            "min_tcb_evaluation_data_number": None,
        }
    )
    assert loosening_changes(base, looser) == (
        "accepted_advisory_ids",
        "min_tcb_evaluation_data_number",
        "require_registered_node",
    )
    assert (
        base.policy_hash()
        != AttestationPolicy.from_dict(
            {**base.to_dict(), "min_tcb_evaluation_data_number": 16}
        ).policy_hash()
    )
    # Policies that do not use the new field keep their hash.
    assert "min_tcb_evaluation_data_number" not in AttestationPolicy().to_dict()
