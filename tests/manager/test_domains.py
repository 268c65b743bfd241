"""Domains through the API: a requested name is pending until its task is approved."""

from __future__ import annotations

import pytest
from attest_helpers import Kit, simulation_pki


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    kit = Kit(harness_factory(), simulation_pki(tmp_path))
    kit.create_app("bank", domains=())
    return kit


def _request(kit: Kit, name: str):
    return kit.client.post(
        kit.harness.url("/domains"),
        json={"app": "bank", "name": name},
        headers=kit.harness.headers(),
    )


def test_request_approve_deny_delete(kit):
    created = _request(kit, "API.Bank.Demo.Local.")
    assert created.status_code == 201, created.text
    domain = created.json()["domain"]
    assert domain["name"] == "api.bank.demo.local"
    assert domain["status"] == "pending"
    kit.approve(created.json()["task"]["id"])
    other = _request(kit, "192.0.2.10").json()
    kit.client.post(
        kit.harness.url(f"/tasks/{other['task']['id']}/deny"),
        headers=kit.harness.headers(kit.editor_token),
    )
    listed = kit.client.get(
        kit.harness.url("/domains"), params={"app": "bank"}, headers=kit.harness.headers()
    ).json()
    assert {(d["name"], d["status"]) for d in listed} == {
        ("api.bank.demo.local", "approved"),
        ("192.0.2.10", "rejected"),
    }
    duplicate = _request(kit, "api.bank.demo.local")
    assert duplicate.json()["code"] == "domain.duplicate"
    deleted = kit.client.delete(
        kit.harness.url(f"/domains/{domain['id']}"), headers=kit.harness.headers()
    )
    assert deleted.status_code == 204
    assert kit.audit_actions("domain.deleted")


@pytest.mark.parametrize("name", ["*.bank.demo.local", "under_score.example", "-bad.example", ""])
def test_invalid_names_are_refused(kit, name):
    response = _request(kit, name)
    assert response.status_code in {400, 422}, response.text


def test_cancelled_task_rejects_the_domain(kit):
    created = _request(kit, "bank.demo.local").json()
    cancelled = kit.client.post(
        kit.harness.url(f"/tasks/{created['task']['id']}/cancel"), headers=kit.harness.headers()
    )
    assert cancelled.status_code == 200
    listed = kit.client.get(kit.harness.url("/domains"), headers=kit.harness.headers()).json()
    assert listed[0]["status"] == "rejected"
