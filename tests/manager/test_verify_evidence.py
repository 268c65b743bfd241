"""``POST /v1/attest/verify-evidence``: the dry run explains each check and issues nothing.

The real quotes of tests/vectors/dcap go through it with the real Intel root at their
``verify_at`` time (the manager's clock is set to it) and give the statuses Intel's rules
expect (``expected.json``, computed independently of this code).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attest_helpers import Kit, Workload, simulation_pki, simulation_settings

from sanctum.attestation.collateral import load_collateral_bundle
from sanctum.attestation.quote import parse_quote
from sanctum.attestation.report import SgxReportBody
from sanctum.manager.models import Role
from sanctum.manager.policy import DEFAULT_ACCEPTED_TCB_STATUSES
from sanctum.manager.services.attestation import wire_collateral
from sanctum.platforms.simulated import TcbDial
from sanctum.protocol.messages import VerifyEvidenceResponse

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dcap"
CASES: list[dict[str, Any]] = json.loads((VECTORS / "expected.json").read_text())["cases"]
ACCEPTED_STATUSES = {status.value for status in DEFAULT_ACCEPTED_TCB_STATUSES}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _register_vector_builds(kit: Kit) -> None:
    seen: set[tuple[str, str]] = set()
    for case in CASES:
        body = parse_quote((VECTORS / case["quote_file"]).read_bytes()).body
        if isinstance(body, SgxReportBody):
            build = {
                "tee": "sgx",
                "measurement": body.mr_enclave.hex(),
                "signer": body.mr_signer.hex(),
            }
        else:
            build = {"tee": "tdx", "measurement": body.mr_td.hex()}
        if (build["tee"], build["measurement"]) in seen:
            continue
        seen.add((build["tee"], build["measurement"]))
        response = kit.client.post(
            kit.harness.url("/builds"), json={"app": "real", **build}, headers=kit.harness.headers()
        )
        assert response.status_code == 201, response.text
        kit.approve(response.json()["task"]["id"])


def test_real_quotes_with_the_intel_root(harness_factory, tmp_path):
    kit = Kit(harness_factory(), simulation_pki(tmp_path))
    kit.create_app("real", domains=(), policy={})
    _register_vector_builds(kit)
    before = kit.certificate_count()
    for case in CASES:
        expected = case["intel_qvl_logic_expected"]["status"]
        verify_at = datetime.fromtimestamp(case["verify_at_unix"], UTC)
        kit.harness.clock.advance(verify_at - kit.harness.clock.now())
        collateral = load_collateral_bundle((VECTORS / case["collateral_file"]).read_bytes())
        response = kit.client.post(
            "/v1/attest/verify-evidence",
            json={
                "app": "real",
                "quote": _b64((VECTORS / case["quote_file"]).read_bytes()),
                "collateral": wire_collateral(collateral).model_dump(mode="json"),
            },
            # A token issued at the case's time (the clock moves across years).
            headers=kit.harness.headers(kit.harness.token_for(kit.harness.admin_id)),
        )
        if expected == "TcbNotSupported":
            # The quote does not verify: a problem document with the verifier's code.
            assert response.status_code == 422, (case["case"], response.text)
            assert response.json()["code"] == "tcb.not_supported", case["case"]
            continue
        assert response.status_code == 200, (case["case"], response.text)
        result = VerifyEvidenceResponse.model_validate_json(response.text).model_dump()
        assert result["verified"]["status"] == expected, case["case"]
        checks = {c["name"]: c["outcome"] for c in result["checks"]}
        assert checks["tcb.status"] == ("pass" if expected in ACCEPTED_STATUSES else "fail")
        assert checks["build.allowlisted"] == "pass", case["case"]
        assert checks["evidence.simulated"] == "pass"
        debug = case["case"] == "sgx-v3-debug-enclave"
        assert checks["enclave.debug"] == ("fail" if debug else "pass"), case["case"]
        assert result["accepted"] == (expected in ACCEPTED_STATUSES and not debug), case["case"]
    # A dry run issues nothing.
    assert kit.certificate_count() == before


def test_dry_run_explains_simulated_evidence(harness_factory, tmp_path):
    kit = Kit(harness_factory(**simulation_settings(tmp_path)), simulation_pki(tmp_path))
    kit.create_app("bank")
    platform = kit.platform("bank", tcb=TcbDial.OUT_OF_DATE)
    kit.register_build("bank", platform)
    workload = Workload.make(platform, sans=("bank.demo.local",))
    nonce = kit.challenge()
    request = workload.request("bank", nonce)
    response = kit.client.post(
        "/v1/attest/verify-evidence", json=request, headers=kit.harness.headers()
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] is False
    assert result["failed"] == ["attest.tcb_status_rejected"]
    outcomes = {c["name"]: c["outcome"] for c in result["checks"]}
    assert outcomes["binding.report_data"] == "pass"
    assert outcomes["domains.approved"] == "pass"
    assert outcomes["evidence.simulated"] == "pass"
    assert result["ear_status"] == "contraindicated"
    # The nonce was not consumed by the dry run, and nothing was issued.
    assert kit.certificate_count() == 0
    assert kit.client.post("/v1/attest", json=request).json()["code"] == (
        "attest.tcb_status_rejected"
    )


def test_dry_run_needs_a_role_in_the_apps_account(harness_factory, tmp_path):
    kit = Kit(harness_factory(**simulation_settings(tmp_path)), simulation_pki(tmp_path))
    kit.create_app("bank")
    platform = kit.platform("bank")
    request = Workload.make(platform).request("bank", kit.challenge())
    anonymous = kit.client.post("/v1/attest/verify-evidence", json=request)
    assert anonymous.status_code == 401
    other = kit.client.post(
        "/v1/accounts", json={"name": "elsewhere"}, headers=kit.harness.headers()
    ).json()["id"]
    _, outsider = kit.harness.add_user(Role.administrator, account_id=other)
    refused = kit.client.post(
        "/v1/attest/verify-evidence", json=request, headers=kit.harness.headers(outsider)
    )
    # The same answer as for an app that does not exist: no leak of other accounts' apps.
    missing = kit.client.post(
        "/v1/attest/verify-evidence",
        json={**request, "app": "no-such-app"},
        headers=kit.harness.headers(outsider),
    )
    assert refused.status_code == missing.status_code == 404
    assert refused.json()["code"] == missing.json()["code"] == "attest.app_unknown"
    assert refused.json()["detail"].replace("bank", "no-such-app") == missing.json()["detail"]
    _, viewer = kit.harness.add_user(Role.viewer)
    allowed = kit.client.post(
        "/v1/attest/verify-evidence", json=request, headers=kit.harness.headers(viewer)
    )
    assert allowed.status_code == 200
    assert allowed.json()["failed"] == ["attest.build_not_allowlisted"]
