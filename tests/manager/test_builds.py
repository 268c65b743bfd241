"""Builds through the API: registration opens a task, approval allowlists, denial rejects,
duplicates are refused, revocation is for administrators."""

from __future__ import annotations

import pytest
from attest_helpers import Kit, simulation_pki

MEASUREMENT = "ab" * 32


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    kit = Kit(harness_factory(), simulation_pki(tmp_path))
    kit.create_app("bank", domains=())
    return kit


def _register(kit: Kit, measurement: str = MEASUREMENT, **extra):
    return kit.client.post(
        kit.harness.url("/builds"),
        json={"app": "bank", "measurement": measurement, "signer": "cd" * 32, **extra},
        headers=kit.harness.headers(),
    )


def test_register_approve_list_show(kit):
    created = _register(kit, image_name="r/bank:1", image_digest="sha256:" + "0" * 64)
    assert created.status_code == 201, created.text
    build, task = created.json()["build"], created.json()["task"]
    assert build["status"] == "pending"
    assert task["type"] == "build_allowlist"
    assert task["payload"]["build_id"] == build["id"]
    # The requester may not approve their own task.
    own = kit.client.post(
        kit.harness.url(f"/tasks/{task['id']}/approve"), headers=kit.harness.headers()
    )
    assert own.json()["code"] == "task.self_approval"
    kit.approve(task["id"])
    shown = kit.client.get(
        kit.harness.url(f"/builds/{MEASUREMENT}"), headers=kit.harness.headers()
    ).json()
    assert shown["status"] == "allowlisted"
    assert shown["id"] == build["id"]
    listed = kit.client.get(
        kit.harness.url("/builds"),
        params={"app": "bank", "status": "allowlisted"},
        headers=kit.harness.headers(),
    ).json()
    assert [b["id"] for b in listed] == [build["id"]]
    assert kit.audit_actions("build.allowlisted")[-1].target_id == build["id"]


def test_denied_build_is_rejected(kit):
    task = _register(kit).json()["task"]
    denied = kit.client.post(
        kit.harness.url(f"/tasks/{task['id']}/deny"),
        headers=kit.harness.headers(kit.editor_token),
    )
    assert denied.status_code == 200
    build = kit.client.get(
        kit.harness.url(f"/builds/{task['payload']['build_id']}"), headers=kit.harness.headers()
    ).json()
    assert build["status"] == "rejected"


def test_duplicate_measurement_is_refused(kit):
    assert _register(kit).status_code == 201
    again = _register(kit, measurement=MEASUREMENT.upper())
    assert again.status_code == 409
    assert again.json()["code"] == "build.duplicate"


@pytest.mark.parametrize(
    "extra",
    [
        {"measurement": "ab" * 31},
        {"measurement": "zz" * 32},
        {"tee": "tdx"},
        {"rtmrs": ["00" * 48]},
    ],
)
def test_malformed_builds_are_refused(kit, extra):
    response = _register(kit, **extra)
    assert response.status_code == 422, response.text


def test_revoke_needs_an_allowlisted_build(kit):
    build = _register(kit).json()["build"]
    response = kit.client.post(
        kit.harness.url(f"/builds/{build['id']}/revoke"), headers=kit.harness.headers()
    )
    assert response.status_code == 409
    assert response.json()["code"] == "build.not_allowlisted"
