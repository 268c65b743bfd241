"""The app policy applied to the real DCAP quotes of tests/vectors/dcap (Intel root).

This is what ``verify-evidence`` does: verify with :mod:`sanctum.attestation.verify`, then
appraise with :func:`sanctum.manager.policy.evaluate`. The expectations come from
``expected.json`` (Intel's rules), not from this code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sanctum.attestation.collateral import load_collateral_bundle
from sanctum.attestation.result import SgxEnclaveIdentity
from sanctum.attestation.trust import TrustAnchor
from sanctum.attestation.verify import verify_quote
from sanctum.manager.policy import (
    DEFAULT_ACCEPTED_TCB_STATUSES,
    AttestationPolicy,
    BuildRef,
    evaluate,
)
from sanctum.protocol.messages import VerifyEvidenceResponse

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dcap"
CASES: dict[str, dict[str, Any]] = {
    case["case"]: case
    for case in json.loads((VECTORS / "expected.json").read_text())["cases"]
    if case["intel_qvl_logic_expected"]["status"] != "TcbNotSupported"
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_quotes_get_the_expected_appraisal(name: str) -> None:
    case = CASES[name]
    expected = case["intel_qvl_logic_expected"]
    verified = verify_quote(
        (VECTORS / case["quote_file"]).read_bytes(),
        load_collateral_bundle((VECTORS / case["collateral_file"]).read_bytes()),
        trust_anchor=TrustAnchor.intel(),
        now=datetime.fromtimestamp(case["verify_at_unix"], UTC),
    )
    identity = verified.identity
    if isinstance(identity, SgxEnclaveIdentity):
        build = BuildRef("b", "sgx", identity.mrenclave, identity.mrsigner)
    else:
        build = BuildRef("b", "tdx", identity.mr_td)
    appraisal = evaluate(AttestationPolicy(), verified, allowlisted_builds=[build])
    outcomes = {check.name: check.outcome for check in appraisal.checks}

    status_accepted = expected["status"] in {s.value for s in DEFAULT_ACCEPTED_TCB_STATUSES}
    assert str(verified.status) == expected["status"]
    assert outcomes["tcb.status"] == ("pass" if status_accepted else "fail")
    assert outcomes["evidence.simulated"] == "pass"
    assert outcomes["build.allowlisted"] == "pass"
    assert outcomes["enclave.debug"] == ("fail" if name == "sgx-v3-debug-enclave" else "pass")
    if "qe_tcb_status" in expected:
        assert outcomes["qe.status"] == (
            "pass" if expected["qe_tcb_status"] == "UpToDate" else "fail"
        )
    assert appraisal.vector.instance_identity == 2
    assert appraisal.vector.hardware == (2 if expected["status"] == "UpToDate" else 32)
    accepted = (
        status_accepted and name != "sgx-v3-debug-enclave" and outcomes["qe.status"] == "pass"
    )
    assert appraisal.accepted is accepted
    # The dry-run answer is exactly the appraisal plus the verified facts, on the shared model.
    answer = VerifyEvidenceResponse.model_validate(
        {**appraisal.to_dict(), "verified": verified.to_dict()}
    )
    again = VerifyEvidenceResponse.model_validate_json(answer.model_dump_json())
    assert again.accepted is accepted
    assert [check.name for check in again.checks] == [c.name for c in appraisal.checks]
    assert again.verified["status"] == expected["status"]
    # A policy that lists the statuses it sees accepts every non-debug case.
    lenient = AttestationPolicy(
        accepted_tcb_statuses=frozenset({verified.status}), min_qe_status=verified.qe.status
    )
    relaxed = evaluate(lenient, verified, allowlisted_builds=[build])
    assert relaxed.accepted is (name != "sgx-v3-debug-enclave")
