"""Members: last-administrator protections, removal, existing users joining other accounts."""

from __future__ import annotations

from sanctum.manager.models import Role


def test_last_admin_cannot_be_demoted_disabled_or_removed(harness):
    url = harness.url(f"/users/{harness.admin_id}")
    demote = harness.client.patch(url, json={"role": "editor"}, headers=harness.headers())
    assert demote.status_code == 409
    assert demote.json()["code"] == "user.last_admin"
    assert harness.client.delete(url, headers=harness.headers()).json()["code"] == "user.last_admin"
    disable = harness.client.patch(url, json={"status": "disabled"}, headers=harness.headers())
    assert disable.json()["code"] == "user.self_disable"
    second_admin, second_token = harness.add_user(Role.administrator)
    last = harness.client.patch(
        url, json={"status": "disabled"}, headers=harness.headers(second_token)
    )
    assert last.status_code == 200
    # Now the second admin is the last active one.
    harness.client.patch(url, json={"status": "active"}, headers=harness.headers(second_token))
    removed = harness.client.delete(
        harness.url(f"/users/{second_admin}"), headers=harness.headers()
    )
    assert removed.status_code == 204
    assert (
        harness.client.get(
            harness.url(f"/users/{second_admin}"), headers=harness.headers()
        ).status_code
        == 404
    )


def test_invite_existing_user_and_admin_invites_refused(harness):
    other = harness.client.post(
        "/v1/accounts", json={"name": "second"}, headers=harness.headers()
    ).json()["id"]
    user_id, _ = harness.add_user(Role.viewer, email="erin@example.org")
    joined = harness.client.post(
        f"/v1/accounts/{other}/users",
        json={"email": "erin@example.org", "name": "Erin", "role": "editor"},
        headers=harness.headers(),
    ).json()
    assert joined["invitation_token"] is None
    assert joined["member"]["id"] == user_id
    dup = harness.client.post(
        f"/v1/accounts/{other}/users",
        json={"email": "erin@example.org", "name": "Erin"},
        headers=harness.headers(),
    )
    assert dup.json()["code"] == "user.already_member"
    admin = harness.client.post(
        harness.url("/users"),
        json={"email": "x@example.org", "name": "X", "role": "administrator"},
        headers=harness.headers(),
    )
    assert admin.json()["code"] == "user.invite_admin"
    bad = harness.client.post(
        harness.url("/users"),
        json={"email": "not-an-email", "name": "X"},
        headers=harness.headers(),
    )
    assert bad.status_code == 422
    # Listing accounts shows both, with the caller's role.
    roles = {
        a["name"]: a["role"]
        for a in harness.client.get("/v1/accounts", headers=harness.headers()).json()
    }
    assert roles == {"default": "administrator", "second": "administrator"}
    assert (
        harness.client.post(
            "/v1/accounts", json={"name": "second"}, headers=harness.headers()
        ).json()["code"]
        == "account.name_taken"
    )


def test_status_change_needs_admin_of_every_account(harness):
    other = harness.client.post(
        "/v1/accounts", json={"name": "third"}, headers=harness.headers()
    ).json()["id"]
    # A second administrator of "default" only.
    _, second_admin = harness.add_user(Role.administrator)
    shared, _ = harness.add_user(Role.editor)
    harness.client.post(
        f"/v1/accounts/{other}/users",
        json={"email": "user1-editor@example.org", "name": "Shared"},
        headers=harness.headers(),
    )
    refused = harness.client.patch(
        harness.url(f"/users/{shared}"),
        json={"status": "disabled"},
        headers=harness.headers(second_admin),
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "user.status_cross_account"
    allowed = harness.client.patch(
        harness.url(f"/users/{shared}"), json={"status": "disabled"}, headers=harness.headers()
    )
    assert allowed.json()["member"]["status"] == "disabled"
