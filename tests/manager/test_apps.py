"""Apps through the API: create, show, update, delete; secrets are write-only and sealed."""

from __future__ import annotations

import pytest
from attest_helpers import Kit, simulation_pki

from sanctum.manager.models import Role
from sanctum.manager.models_attestation import AppSecret


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    return Kit(harness_factory(), simulation_pki(tmp_path))


def test_create_show_update_delete(kit):
    app = kit.create_app(
        "bank",
        domains=("bank.demo.local",),
        approve_domains=False,
        policy={"rejected_advisory_ids": ["INTEL-SA-00615"]},
        isvprodid=7,
        min_isvsvn=2,
        certificate={"subject": "bank", "validity_seconds": 3600},
        env={"set": {"MODE": "prod"}, "passthrough": ["TZ"]},
        args={"mode": "fixed", "args": ["--serve"]},
        encrypted_dirs=["/data"],
    )
    assert app["domains"][0]["status"] == "pending"
    assert [t["type"] for t in app["tasks"]] == ["domain_allowlist"]
    assert app["secrets"] == [
        {
            "name": "DB_PASSWORD",
            "delivery": "env",
            "target": "DB_PASSWORD",
            "created_at": app["secrets"][0]["created_at"],
            "updated_at": app["secrets"][0]["updated_at"],
        }
    ]
    assert app["policy"]["unsafe_allow_simulated"] is False
    assert app["policy"]["rejected_advisory_ids"] == ["INTEL-SA-00615"]
    shown = kit.client.get(kit.harness.url("/apps/bank"), headers=kit.harness.headers()).json()
    assert shown["policy_hash"] == app["policy_hash"]
    assert shown["id"] == app["id"]
    updated = kit.client.patch(
        kit.harness.url(f"/apps/{app['id']}"),
        json={
            "min_isvsvn": 5,
            "policy": {"rejected_advisory_ids": ["INTEL-SA-00615", "INTEL-SA-00657"]},
        },
        headers=kit.harness.headers(kit.editor_token),
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["min_isvsvn"] == 5
    assert updated.json()["tasks"] == []
    assert updated.json()["policy_hash"] != app["policy_hash"]
    audit = kit.audit_actions("app.updated")[-1]
    assert audit.details["policy_hash_before"] == app["policy_hash"]
    listed = kit.client.get(kit.harness.url("/apps"), headers=kit.harness.headers()).json()
    assert [a["name"] for a in listed] == ["bank"]
    deleted = kit.client.delete(kit.harness.url("/apps/bank"), headers=kit.harness.headers())
    assert deleted.status_code == 204
    gone = kit.client.get(kit.harness.url("/apps/bank"), headers=kit.harness.headers())
    assert gone.json()["code"] == "app.not_found"


def test_secret_values_are_write_only_and_sealed(kit):
    secret = "correct-horse-battery-staple-0192"
    kit.create_app("bank", domains=(), secrets={"API": {"value": secret, "delivery": "env"}})
    response = kit.client.put(
        kit.harness.url("/apps/bank/secrets/tls-key"),
        json={
            "value": "c2VjcmV0LWZpbGU=",
            "encoding": "base64",
            "delivery": "file",
            "path": "/run/k",
        },
        headers=kit.harness.headers(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["target"] == "/run/k"
    for path in ("/apps", "/apps/bank"):
        text = kit.client.get(kit.harness.url(path), headers=kit.harness.headers()).text
        assert secret not in text
        assert "secret-file" not in text
    with kit.harness.runtime.db.transaction() as session:
        blobs = b"".join(row.sealed_value for row in session.query(AppSecret).all())
    assert secret.encode() not in blobs
    assert b"secret-file" not in blobs
    audit = kit.audit_actions("app.secret_set")
    assert all(secret not in str(entry.details) for entry in audit)
    deleted = kit.client.delete(
        kit.harness.url("/apps/bank/secrets/API"), headers=kit.harness.headers()
    )
    assert deleted.status_code == 204
    missing = kit.client.delete(
        kit.harness.url("/apps/bank/secrets/API"), headers=kit.harness.headers()
    )
    assert missing.json()["code"] == "app.secret_not_found"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"name": "ok", "policy": {"accepted_tcb_statuses": ["Revoked"]}}, "policy"),
        ({"name": "ok", "policy": {"accepted_tcb_statuses": ["Fine"]}}, "policy"),
        ({"name": "ok", "certificate": {"key_path": "relative/key.pem"}}, "certificate"),
        ({"name": "ok", "secrets": {"S": {"value": "x", "delivery": "file"}}}, "secrets"),
        ({"name": "ok", "domains": ["*.wild.example"]}, "domains"),
    ],
)
def test_invalid_apps_are_refused(kit, body, where):
    response = kit.client.post(kit.harness.url("/apps"), json=body, headers=kit.harness.headers())
    assert response.status_code in {400, 422}, (where, response.text)
    assert kit.client.get(kit.harness.url("/apps"), headers=kit.harness.headers()).json() == []


def test_duplicate_name_and_roles(kit):
    kit.create_app("bank", domains=())
    again = kit.client.post(
        kit.harness.url("/apps"), json={"name": "bank"}, headers=kit.harness.headers()
    )
    assert again.status_code == 409
    assert again.json()["code"] == "app.name_taken"
    _, viewer = kit.harness.add_user(Role.viewer)
    refused = kit.client.post(
        kit.harness.url("/apps"), json={"name": "other"}, headers=kit.harness.headers(viewer)
    )
    assert refused.status_code == 403
    assert kit.client.get(kit.harness.url("/apps"), headers=kit.harness.headers(viewer)).json()


@pytest.mark.parametrize(
    "change",
    [
        {"policy": {"unsafe_allow_debug": True}},
        {"policy": {"unsafe_allow_simulated": True, "unsafe_allow_expired_collateral": True}},
        {"policy": {"accepted_tcb_statuses": ["UpToDate", "OutOfDate"]}},
        {"policy": {"min_qe_status": "OutOfDate"}},
        {"policy": {}},  # Drops the rejected advisory.
        {"isvprodid": 8},
        {"min_isvsvn": 1},
    ],
)
def test_editor_cannot_loosen_the_policy_without_approval(kit, change):
    app = kit.create_app(
        "bank",
        domains=(),
        policy={"rejected_advisory_ids": ["INTEL-SA-00615"]},
        isvprodid=7,
        min_isvsvn=2,
    )
    before = app["policy_hash"]
    url = kit.harness.url(f"/apps/{app['id']}")
    updated = kit.client.patch(
        url, json={**change, "description": "new"}, headers=kit.harness.headers(kit.editor_token)
    )
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["policy_hash"] == before
    assert body["description"] == "new"
    assert [t["type"] for t in body["tasks"]] == ["app_policy_change"]
    shown = kit.client.get(url, headers=kit.harness.headers()).json()
    assert shown["policy_hash"] == before
    assert (shown["isvprodid"], shown["min_isvsvn"]) == (7, 2)
    approve = kit.harness.url(f"/tasks/{body['tasks'][0]['id']}/approve")
    own = kit.client.post(approve, headers=kit.harness.headers(kit.editor_token))
    assert own.json()["code"] == "task.self_approval"
    assert kit.client.post(approve, headers=kit.harness.headers()).status_code == 200
    approved = kit.client.get(url, headers=kit.harness.headers()).json()
    assert approved["policy_hash"] != before
    for field in ("isvprodid", "min_isvsvn"):
        if field in change:
            assert approved[field] == change[field]
    for key, value in change.get("policy", {}).items():
        assert approved["policy"][key] == (sorted(value) if isinstance(value, list) else value)
    assert kit.audit_actions("app.policy_changed")


def test_tightening_applies_at_once_and_stale_loosening_fails(kit):
    app = kit.create_app("bank", domains=(), policy={"unsafe_allow_simulated": True})
    url = kit.harness.url(f"/apps/{app['id']}")
    editor = kit.harness.headers(kit.editor_token)
    loosen = kit.client.patch(
        url,
        json={"policy": {"unsafe_allow_simulated": True, "unsafe_allow_debug": True}},
        headers=editor,
    )
    task_id = loosen.json()["tasks"][0]["id"]
    tighten = kit.client.patch(
        url,
        json={"policy": {"accepted_tcb_statuses": ["UpToDate"]}, "min_isvsvn": 3},
        headers=editor,
    )
    assert tighten.json()["tasks"] == []
    assert tighten.json()["policy"]["unsafe_allow_simulated"] is False
    assert tighten.json()["policy"]["accepted_tcb_statuses"] == ["UpToDate"]
    assert tighten.json()["min_isvsvn"] == 3
    # The loosening was requested against the old policy: approving it now fails.
    result = kit.client.post(
        kit.harness.url(f"/tasks/{task_id}/approve"), headers=kit.harness.headers()
    ).json()
    assert result["status"] == "failed"
    assert result["result_code"] == "app.policy_changed"
