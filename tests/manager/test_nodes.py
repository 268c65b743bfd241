"""Nodes: join with a single-use token and a verified quote, the registered-node rule,
deactivation, re-attestation, and flagging after a collateral refresh."""

from __future__ import annotations

import base64

import pytest
from attest_helpers import Kit, Workload, simulation_pki, simulation_settings
from cryptography import x509

from sanctum.manager.ca import read_attestation_extension
from sanctum.manager.models import Role
from sanctum.platforms.collateral_source import SimulatedCollateralSource
from sanctum.platforms.simulated import SimulatedPlatform, TcbDial
from sanctum.protocol.workload import workload_report_data


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    return Kit(harness_factory(**simulation_settings(tmp_path)), simulation_pki(tmp_path))


def _create(kit: Kit, name: str) -> dict:
    response = kit.client.post(
        kit.harness.url("/nodes"), json={"name": name}, headers=kit.harness.headers()
    )
    assert response.status_code == 201, response.text
    return response.json()


def _join(kit: Kit, platform: SimulatedPlatform, token: str):
    node_key = Workload.make(platform)
    nonce = kit.challenge()
    request = node_key.request("node", nonce)
    body = {
        "token": token,
        "quote": request["quote"],
        "csr": request["csr"],
        "nonce": request["nonce"],
        "collateral": request["collateral"],
    }
    return kit.client.post("/v1/nodes/join", json=body)


def test_node_joins_and_gets_a_certificate(kit):
    created = _create(kit, "node-a")
    assert created["node"]["status"] == "pending"
    platform = kit.platform("node-a")
    response = _join(kit, platform, created["join_token"])
    assert response.status_code == 200, response.text
    joined = response.json()
    node = joined["node"]
    assert node["status"] == "active"
    assert node["simulated"] is True
    assert node["tcb_status"] == "UpToDate"
    assert node["fmspc"] == platform.pck_extension.fmspc.hex()
    certificate = x509.load_pem_x509_certificate(joined["certificate"].encode())
    assert read_attestation_extension(certificate).simulated is True
    assert node["certificate_serial"] == format(certificate.serial_number, "x")
    # The token is single use.
    again = _join(kit, platform, created["join_token"])
    assert again.status_code == 403
    assert again.json()["code"] == "node.token_invalid"
    assert kit.audit_actions("node.join_refused")[-1].details["code"] == "node.token_invalid"


def test_node_with_unacceptable_tcb_fails(kit):
    created = _create(kit, "old")
    response = _join(kit, kit.platform("old", tcb=TcbDial.OUT_OF_DATE), created["join_token"])
    assert response.status_code == 422
    assert response.json()["code"] == "node.tcb_status_rejected"
    shown = kit.client.get(
        kit.harness.url(f"/nodes/{created['node']['id']}"), headers=kit.harness.headers()
    ).json()
    assert shown["status"] == "failed"
    assert "OutOfDate" in shown["flag"]


def test_registered_node_rule(kit):
    kit.create_app("bank", policy={"unsafe_allow_simulated": True, "require_registered_node": True})
    platform = kit.platform("bank")
    kit.register_build("bank", platform)
    before = kit.certificate_count()
    refused = kit.attest(Workload.make(platform), "bank")
    assert refused.json()["code"] == "attest.node_not_registered"
    assert kit.certificate_count() == before
    created = _create(kit, "host-1")
    assert _join(kit, platform, created["join_token"]).status_code == 200
    accepted = kit.attest(Workload.make(platform), "bank")
    assert accepted.status_code == 200, accepted.text
    # Deactivating the node revokes its certificate and stops its workloads attesting.
    deactivated = kit.client.post(
        kit.harness.url(f"/nodes/{created['node']['id']}/deactivate"),
        headers=kit.harness.headers(),
    )
    assert deactivated.json()["status"] == "deactivated"
    node_cert = kit.client.get(
        kit.harness.url(f"/certificates/{deactivated.json()['certificate_serial']}"),
        headers=kit.harness.headers(),
    ).json()
    assert node_cert["status"] == "revoked"
    assert kit.attest(Workload.make(platform), "bank").json()["code"] == (
        "attest.node_not_registered"
    )


def test_reattest_with_a_new_token(kit):
    created = _create(kit, "node-r")
    platform = kit.platform("node-r")
    first = _join(kit, platform, created["join_token"]).json()
    renewed = kit.client.post(
        kit.harness.url(f"/nodes/{created['node']['id']}/join-token"),
        headers=kit.harness.headers(),
    )
    assert renewed.status_code == 200
    second = _join(kit, platform, renewed.json()["join_token"])
    assert second.status_code == 200, second.text
    assert second.json()["node"]["certificate_serial"] != first["node"]["certificate_serial"]
    old = kit.client.get(
        kit.harness.url(f"/certificates/{first['node']['certificate_serial']}"),
        headers=kit.harness.headers(),
    ).json()
    assert old["status"] == "revoked"
    assert old["revocation_reason"] == "superseded"


def test_recheck_flags_a_node_whose_tcb_became_unacceptable(kit):
    created = _create(kit, "node-f")
    platform = kit.platform("node-f")
    joined = _join(kit, platform, created["join_token"])
    assert joined.status_code == 200
    rechecker = kit.harness.app.state.node_recheck
    rechecker.source = SimulatedCollateralSource(platform)
    checked = kit.client.post(kit.harness.url("/nodes/recheck"), headers=kit.harness.headers())
    assert checked.status_code == 200, checked.text
    assert (checked.json()["checked"], checked.json()["changes"]) == (1, [])
    # Intel publishes new TCB info: this platform's level is now out of date.
    rechecker.source = SimulatedCollateralSource(kit.platform("node-f", tcb=TcbDial.OUT_OF_DATE))
    checked = kit.client.post(kit.harness.url("/nodes/recheck"), headers=kit.harness.headers())
    [change] = checked.json()["changes"]
    assert change["name"] == "node-f"
    assert (change["old_tcb_status"], change["new_tcb_status"]) == ("UpToDate", "OutOfDate")
    assert change["flagged"] is True
    assert change["code"] == "node.tcb_status_rejected"
    shown = kit.client.get(
        kit.harness.url(f"/nodes/{created['node']['id']}"), headers=kit.harness.headers()
    ).json()
    assert shown["status"] == "failed"
    assert shown["tcb_status"] == "OutOfDate"
    assert shown["flag"].startswith("node.tcb_status_rejected")
    entry = kit.audit_actions("node.flagged")[-1]
    assert entry.details["old_tcb_status"] == "UpToDate"
    assert entry.details["new_tcb_status"] == "OutOfDate"
    assert entry.actor_type == "user"
    # Only administrators may ask for a re-check.
    _, editor = kit.harness.add_user(Role.editor)
    refused = kit.client.post(
        kit.harness.url("/nodes/recheck"), headers=kit.harness.headers(editor)
    )
    assert refused.status_code == 403


def test_recheck_without_a_collateral_source_is_refused(kit):
    response = kit.client.post(kit.harness.url("/nodes/recheck"), headers=kit.harness.headers())
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "node.collateral_source_missing"


def test_join_binding_is_checked(kit):
    created = _create(kit, "node-b")
    platform = kit.platform("node-b")
    workload = Workload.make(platform)
    nonce = kit.challenge()
    other = Workload.make(platform)
    body = {
        "token": created["join_token"],
        "quote": base64.b64encode(
            platform.quote(workload_report_data(nonce, workload.key))
        ).decode(),
        "csr": other.csr,
        "nonce": base64.b64encode(nonce).decode(),
        "collateral": workload.request("node", nonce)["collateral"],
    }
    response = kit.client.post("/v1/nodes/join", json=body)
    assert response.json()["code"] == "attest.binding_mismatch"
