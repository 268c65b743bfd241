"""Approval tasks: quorum, self-approval, denial, expiry, double votes, role raises."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import BaseModel

from sanctum.errors import UsageError
from sanctum.manager.models import Role
from sanctum.manager.services.tasks import TaskRegistry, TaskType


def _raise_task(harness, user_id, token=None):
    response = harness.client.patch(
        harness.url(f"/users/{user_id}"),
        json={"role": "administrator"},
        headers=harness.headers(token),
    )
    assert response.status_code == 200, response.text
    task = response.json()["task"]
    assert task["type"] == "role_raise_to_admin"
    assert response.json()["member"]["role"] == "editor"  # Not yet.
    return task["id"]


def _vote(harness, task_id, token, verb="approve", **body):
    return harness.client.post(
        harness.url(f"/tasks/{task_id}/{verb}"), json=body or None, headers=harness.headers(token)
    )


def test_role_raise_needs_another_voter(harness):
    target, _ = harness.add_user(Role.editor)
    _, voter = harness.add_user(Role.editor)
    task_id = _raise_task(harness, target)
    own = _vote(harness, task_id, harness.admin_token)
    assert own.status_code == 403
    assert own.json()["code"] == "task.self_approval"
    approved = _vote(harness, task_id, voter, comment="ok")
    assert approved.status_code == 200
    assert approved.json()["status"] == "approved"
    assert approved.json()["votes"][0]["comment"] == "ok"
    member = harness.client.get(harness.url(f"/users/{target}"), headers=harness.headers()).json()
    assert member["role"] == "administrator"
    closed = _vote(harness, task_id, harness.add_user(Role.editor)[1])
    assert closed.status_code == 409
    assert closed.json()["code"] == "task.closed"


def test_quorum_two_denial_and_double_vote(harness):
    _, e1 = harness.add_user(Role.editor)
    _, e2 = harness.add_user(Role.editor)
    _, e3 = harness.add_user(Role.editor)
    change = harness.client.patch(harness.url(), json={"quorum": 2}, headers=harness.headers())
    assert _vote(harness, change.json()["task"]["id"], e1).json()["status"] == "approved"
    account = harness.client.get(harness.url(), headers=harness.headers()).json()
    assert account["quorum"] == 2
    target, _ = harness.add_user(Role.viewer)
    harness.client.patch(
        harness.url(f"/users/{target}"), json={"role": "editor"}, headers=harness.headers()
    )
    task_id = _raise_task(harness, target)
    first = _vote(harness, task_id, e1)
    assert first.json()["status"] == "pending"
    again = _vote(harness, task_id, e1)
    assert again.status_code == 409
    assert again.json()["code"] == "task.already_voted"
    detail = harness.client.get(harness.url(f"/tasks/{task_id}"), headers=harness.headers()).json()
    by_id = {v["id"]: v for v in detail["voters"]}
    assert by_id[harness.admin_id]["is_requester"] is True
    assert sorted(v["decision"] or "-" for v in detail["voters"]).count("approve") == 1
    assert target in by_id  # The target is an editor now, so eligible.
    denied = _vote(harness, task_id, e2, "deny")
    assert denied.json()["status"] == "denied"
    assert _vote(harness, task_id, e3).json()["code"] == "task.closed"
    member = harness.client.get(harness.url(f"/users/{target}"), headers=harness.headers()).json()
    assert member["role"] == "editor"


def test_service_key_creator_cannot_approve_the_keys_task(harness):
    target, _ = harness.add_user(Role.editor)
    key = harness.client.post(
        harness.url("/apikeys"),
        json={"name": "ci", "role": "administrator", "service_account": True},
        headers=harness.headers(),
    )
    assert key.status_code == 201, key.text
    key_token = harness.client.post(
        "/v1/auth/token", json={"api_key": key.json()["secret"]}
    ).json()["access_token"]
    task_id = _raise_task(harness, target, token=key_token)
    detail = harness.client.get(harness.url(f"/tasks/{task_id}"), headers=harness.headers()).json()
    assert detail["requested_by"] == harness.admin_id
    own = _vote(harness, task_id, harness.admin_token)
    assert own.status_code == 403
    assert own.json()["code"] == "task.self_approval"
    _, other = harness.add_user(Role.editor)
    assert _vote(harness, task_id, other).json()["status"] == "approved"


def test_viewers_and_api_keys_cannot_vote(harness):
    target, _ = harness.add_user(Role.editor)
    _, viewer = harness.add_user(Role.viewer)
    task_id = _raise_task(harness, target)
    assert _vote(harness, task_id, viewer).status_code == 403
    key = harness.client.post(
        harness.url("/apikeys"),
        json={"name": "bot", "role": "administrator"},
        headers=harness.headers(),
    ).json()["secret"]
    key_token = harness.client.post("/v1/auth/token", json={"api_key": key}).json()["access_token"]
    refused = _vote(harness, task_id, key_token)
    assert refused.status_code == 403
    assert refused.json()["code"] == "task.voter_not_user"


def test_expiry_list_filters_and_cancel(harness):
    target, _ = harness.add_user(Role.editor)
    _, voter = harness.add_user(Role.editor)
    expiring = _raise_task(harness, target)
    harness.clock.advance(dt.timedelta(days=7, seconds=1))
    voter = harness.token_for(harness.add_user(Role.editor)[0])
    late = _vote(harness, expiring, voter)
    assert late.status_code == 409
    listed = harness.client.get(
        harness.url("/tasks"),
        params={"status": "expired"},
        headers=harness.headers(harness.token_for(harness.admin_id)),
    ).json()
    assert [t["id"] for t in listed] == [expiring]
    admin = harness.token_for(harness.admin_id)
    second = harness.client.patch(
        harness.url(f"/users/{target}"),
        json={"role": "administrator"},
        headers=harness.headers(admin),
    ).json()["task"]["id"]
    duplicate = harness.client.patch(
        harness.url(f"/users/{target}"),
        json={"role": "administrator"},
        headers=harness.headers(admin),
    )
    assert duplicate.json()["code"] == "task.duplicate"
    other_editor = harness.token_for(harness.add_user(Role.editor)[0])
    assert (
        harness.client.post(
            harness.url(f"/tasks/{second}/cancel"), headers=harness.headers(other_editor)
        ).json()["code"]
        == "task.not_yours"
    )
    cancelled = harness.client.post(
        harness.url(f"/tasks/{second}/cancel"), headers=harness.headers(admin)
    )
    assert cancelled.json()["status"] == "cancelled"
    by_type = harness.client.get(
        harness.url("/tasks"), params={"type": "quorum_change"}, headers=harness.headers(admin)
    ).json()
    assert by_type == []


def test_unreachable_quorum_fails_the_task(harness):
    _, voter = harness.add_user(Role.editor)
    task = harness.client.patch(harness.url(), json={"quorum": 5}, headers=harness.headers()).json()
    result = _vote(harness, task["task"]["id"], voter).json()
    assert result["status"] == "failed"
    assert result["result_code"] == "account.quorum_unreachable"
    assert harness.client.get(harness.url(), headers=harness.headers()).json()["quorum"] == 1


def test_self_approval_when_allowed(harness):
    account = harness.client.post(
        "/v1/accounts",
        json={"name": "solo", "allow_self_approval": True},
        headers=harness.headers(),
    ).json()
    response = harness.client.patch(
        f"/v1/accounts/{account['id']}",
        json={"name": "solo-2", "quorum": 1, "allow_self_approval": False},
        headers=harness.headers(),
    ).json()
    assert response["account"]["name"] == "solo-2"
    task_id = response["task"]["id"]
    approved = harness.client.post(
        f"/v1/accounts/{account['id']}/tasks/{task_id}/approve", headers=harness.headers()
    )
    assert approved.json()["status"] == "approved"
    assert (
        harness.client.get(f"/v1/accounts/{account['id']}", headers=harness.headers()).json()[
            "allow_self_approval"
        ]
        is False
    )


def test_registry_is_extensible():
    class Payload(BaseModel):
        build_id: str

    registry = TaskRegistry()
    seen = []
    registry.register(
        TaskType(
            name="build_allowlist",
            payload_model=Payload,
            on_approved=lambda _c, _t, p: seen.append(p),
        )
    )
    assert registry.names() == ["build_allowlist"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(
            TaskType(name="build_allowlist", payload_model=Payload, on_approved=print)
        )
    with pytest.raises(UsageError):
        registry.get("unknown")
