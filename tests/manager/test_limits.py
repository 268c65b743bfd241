"""Request size limits: the body limit middleware and the bounded workload wire fields."""

from __future__ import annotations

import pytest
from attest_helpers import START, Workload, simulation_pki, simulation_settings
from pydantic import ValidationError

from sanctum.manager.services.attestation import wire_collateral
from sanctum.platforms.simulated import SimulatedPlatform
from sanctum.protocol.messages import Collateral


def test_oversized_declared_body_is_refused(harness):
    response = harness.client.post(
        "/v1/attest", content=b"{" + b" " * (1024 * 1024 + 1), headers={"content-type": "x"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "request.too_large"
    assert response.headers["x-request-id"]


def test_oversized_chunked_body_is_refused(harness_factory):
    harness = harness_factory(max_request_bytes=4096)

    def chunks():
        for _ in range(10):
            yield b"x" * 1024

    response = harness.client.post(
        "/v1/attest/verify-evidence", content=chunks(), headers=harness.headers()
    )
    assert response.status_code == 413
    assert response.json()["code"] == "request.too_large"
    small = harness.client.post("/v1/attest/challenge")
    assert small.status_code == 200


def test_collateral_fields_are_bounded(tmp_path):
    pki = simulation_pki(tmp_path)
    platform = SimulatedPlatform(pki, tee="sgx", now=START, seed=b"limits")
    wire = wire_collateral(platform.collateral(now=START)).model_dump(mode="json")
    Collateral.model_validate(wire)
    for name, value in (
        ("tcb_info", "x" * (256 * 1024 + 1)),
        ("tcb_info_issuer_chain", "x" * (32 * 1024 + 1)),
        ("pck_certificate_chain", "x" * (32 * 1024 + 1)),
    ):
        with pytest.raises(ValidationError):
            Collateral.model_validate({**wire, name: value})


def test_attest_with_oversized_collateral_is_a_validation_error(harness_factory, tmp_path):
    harness = harness_factory(**simulation_settings(tmp_path))
    platform = SimulatedPlatform(simulation_pki(tmp_path), tee="sgx", now=START, seed=b"l")
    request = Workload.make(platform).request("bank", b"n" * 32)
    request["collateral"]["qe_identity"] = "x" * (300 * 1024)
    response = harness.client.post("/v1/attest", json=request)
    assert response.status_code == 422
