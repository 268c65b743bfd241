"""``sanctum nodes`` against a manager served over HTTPS (the join itself is the node's API
call, made here with the simulated platform)."""

from __future__ import annotations

import base64

import pytest
from manager_cli_helpers import START, Served, served_manager

from sanctum.manager.services.attestation import wire_collateral
from sanctum.protocol.workload import build_csr, generate_workload_key, workload_report_data


@pytest.fixture
def served(tmp_path, monkeypatch):
    with served_manager(tmp_path, monkeypatch) as manager:
        yield manager


def _join(served: Served, token: str) -> dict:
    nonce = base64.b64decode(served.http.post("/v1/attest/challenge").json()["nonce"])
    key = generate_workload_key()
    response = served.http.post(
        "/v1/nodes/join",
        json={
            "token": token,
            "quote": base64.b64encode(
                served.platform.quote(workload_report_data(nonce, key))
            ).decode(),
            "csr": build_csr(key, common_name="node"),
            "nonce": base64.b64encode(nonce).decode(),
            "collateral": wire_collateral(served.platform.collateral(now=START)).model_dump(
                mode="json"
            ),
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_nodes_lifecycle(served: Served):
    created = served.cli_json("nodes", "create", "host-1")
    assert created["node"]["status"] == "pending"
    joined = _join(served, created["join_token"])
    assert joined["node"]["status"] == "active"
    listed = served.cli_json("nodes", "list")
    assert [(n["name"], n["status"], n["simulated"]) for n in listed] == [
        ("host-1", "active", True)
    ]
    assert served.cli_json("nodes", "show", "host-1")["tcb_status"] == "UpToDate"
    token = served.cli_json("nodes", "join-token", "host-1")["join_token"]
    assert token != created["join_token"]
    refreshed = served.cli("nodes", "refresh")
    assert refreshed.exit_code == 2  # No collateral source is configured on this manager.
    assert "node.collateral_source_missing" in refreshed.output
    deactivated = served.cli_json("nodes", "deactivate", "host-1")
    assert deactivated["status"] == "deactivated"
    table = served.cli("nodes", "list")
    assert "deactivated" in table.output
