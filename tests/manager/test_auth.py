"""Sign-in, bearer tokens, API keys, invitations, passwords, rate limiting."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest
from sqlalchemy import func, select

from conftest import BOOTSTRAP_PASSWORD
from sanctum.manager.credentials import verify_bearer_token
from sanctum.manager.models import ApiKey, AuditEntry, AuthFailure, Role


def _token(harness, **body):
    return harness.client.post("/v1/auth/token", json=body)


def test_password_token_is_a_standard_jwt(harness):
    response = _token(harness, email="ADMIN@example.org", password=BOOTSTRAP_PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    claims = jwt.decode(
        body["access_token"],
        harness.runtime.token_key,
        algorithms=["HS256"],
        options={"verify_exp": False},
    )
    assert claims["sub"] == harness.admin_id
    assert claims["exp"] - claims["iat"] == 900


def test_token_expires_with_the_clock(harness):
    assert harness.client.get("/v1/auth/whoami", headers=harness.headers()).status_code == 200
    harness.clock.advance(dt.timedelta(minutes=16))
    expired = harness.client.get("/v1/auth/whoami", headers=harness.headers())
    assert expired.status_code == 401
    assert expired.json()["code"] == "auth.token_expired"


def test_forged_and_malformed_tokens_are_refused(harness):
    forged = jwt.encode({"sub": harness.admin_id, "iss": "sanctum-manager"}, "k" * 32)
    for token in (forged, "garbage", harness.admin_token[:-3] + "AAA"):
        response = harness.client.get("/v1/auth/whoami", headers=harness.headers(token))
        assert response.status_code == 401
    basic = harness.client.get("/v1/auth/whoami", headers={"Authorization": "Basic eDp5"})
    assert basic.json()["code"] == "auth.scheme_unsupported"
    with pytest.raises(Exception):  # noqa: B017 (any Sanctum auth error)
        verify_bearer_token(b"x" * 32, harness.admin_token, now=harness.clock.now())


def test_wrong_credentials_are_generic_and_audited(harness):
    wrong = _token(harness, email="admin@example.org", password="wrong-password-1")
    unknown = _token(harness, email="nobody@example.org", password="wrong-password-1")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"] == "auth.invalid_credentials"
    assert wrong.json()["detail"] == unknown.json()["detail"]
    with harness.runtime.db.transaction() as session:
        failures = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "auth.login_failed")
        ).all()
        assert len(failures) == 2
        assert {f.details["reason"] for f in failures} == {"auth.password_wrong"}
    neither = _token(harness)
    assert neither.status_code == 422
    assert neither.json()["code"] == "request.invalid"


def test_rate_limit_per_identity_then_window_passes(harness):
    for _ in range(5):
        assert (
            _token(harness, email="admin@example.org", password="nope-nope-nope").status_code == 401
        )
    limited = _token(harness, email="admin@example.org", password=BOOTSTRAP_PASSWORD)
    assert limited.status_code == 429
    assert limited.json()["code"] == "auth.rate_limited"
    assert int(limited.headers["retry-after"]) == 900
    with harness.runtime.db.transaction() as session:
        assert session.scalars(
            select(AuditEntry.outcome).where(AuditEntry.action == "auth.rate_limited")
        ).all() == ["denied"]
    harness.clock.advance(dt.timedelta(minutes=16))
    assert (
        _token(harness, email="admin@example.org", password=BOOTSTRAP_PASSWORD).status_code == 200
    )
    with harness.runtime.db.transaction() as session:
        remaining = session.scalar(
            select(func.count()).select_from(AuthFailure).where(AuthFailure.scope == "identity")
        )
        assert remaining == 0  # A success clears the identity's failures.


def test_rate_limit_per_source_address(harness_factory):
    harness = harness_factory(login_max_failures_per_address=3)
    for number in range(3):
        _token(harness, email=f"u{number}@example.org", password="nope-nope-nope")
    limited = _token(harness, email="admin@example.org", password=BOOTSTRAP_PASSWORD)
    assert limited.status_code == 429


def test_disabled_user_stops_at_once(harness):
    user_id, token = harness.add_user(Role.editor)
    assert harness.client.get("/v1/auth/whoami", headers=harness.headers(token)).status_code == 200
    disabled = harness.client.patch(
        harness.url(f"/users/{user_id}"), json={"status": "disabled"}, headers=harness.headers()
    )
    assert disabled.json()["member"]["status"] == "disabled"
    refused = harness.client.get("/v1/auth/whoami", headers=harness.headers(token))
    assert refused.status_code == 401
    assert refused.json()["code"] == "auth.revoked"
    harness.client.patch(
        harness.url(f"/users/{user_id}"), json={"status": "active"}, headers=harness.headers()
    )
    assert harness.client.get("/v1/auth/whoami", headers=harness.headers(token)).status_code == 200


def test_api_key_lifecycle(harness):
    created = harness.client.post(
        harness.url("/apikeys"),
        json={"name": "ci", "role": "editor", "expires_at": "2026-03-02T12:00:00Z"},
        headers=harness.headers(),
    )
    assert created.status_code == 201
    secret = created.json()["secret"]
    key_id = created.json()["key"]["id"]
    assert secret.startswith("snk_")
    listed = harness.client.get(harness.url("/apikeys"), headers=harness.headers()).json()
    assert [k["prefix"] for k in listed] == [created.json()["key"]["prefix"]]
    assert "secret" not in listed[0]
    with harness.runtime.db.transaction() as session:
        stored = session.get(ApiKey, key_id)
        assert secret not in (stored.key_hash, stored.prefix)
    token = _token(harness, api_key=secret).json()["access_token"]
    whoami = harness.client.get("/v1/auth/whoami", headers=harness.headers(token)).json()
    assert whoami == {
        "actor_type": "apikey",
        "id": key_id,
        "name": "ci",
        "user_id": harness.admin_id,
        "account_id": harness.account_id,
    }
    used = harness.client.get(harness.url("/apikeys"), headers=harness.headers()).json()[0]
    assert used["last_use" + "d_at"] is not None
    # Keys act only in their own account, and cannot make keys.
    assert (
        harness.client.post(
            harness.url("/apikeys"), json={"name": "x"}, headers=harness.headers(token)
        ).json()["code"]
        == "apikey.creator_not_user"
    )
    revoked = harness.client.delete(harness.url(f"/apikeys/{key_id}"), headers=harness.headers())
    assert revoked.json()["revoked_at"] is not None
    assert harness.client.get("/v1/auth/whoami", headers=harness.headers(token)).status_code == 401
    assert _token(harness, api_key=secret).status_code == 401


def test_api_key_expiry_and_role_ceiling(harness):
    viewer_id, viewer = harness.add_user(Role.viewer)
    too_high = harness.client.post(
        harness.url("/apikeys"),
        json={"name": "x", "role": "editor"},
        headers=harness.headers(viewer),
    )
    assert too_high.status_code == 403
    assert too_high.json()["code"] == "apikey.role_too_high"
    service = harness.client.post(
        harness.url("/apikeys"),
        json={"name": "svc", "role": "viewer", "service_account": True},
        headers=harness.headers(viewer),
    )
    assert service.json()["code"] == "apikey.service_account_admin_only"
    created = harness.client.post(
        harness.url("/apikeys"),
        json={"name": "short", "expires_at": "2026-03-01T13:00:00Z"},
        headers=harness.headers(viewer),
    ).json()
    token = _token(harness, api_key=created["secret"]).json()["access_token"]
    harness.clock.advance(dt.timedelta(minutes=61))
    assert harness.client.get("/v1/auth/whoami", headers=harness.headers(token)).status_code == 401
    assert _token(harness, api_key=created["secret"]).status_code == 401
    # A viewer sees only their own keys; the administrator sees all.
    fresh = harness.token_for(viewer_id)
    mine = harness.client.get(harness.url("/apikeys"), headers=harness.headers(fresh)).json()
    assert [k["name"] for k in mine] == ["short"]


def test_invitation_is_single_use_and_expires(harness):
    invited = harness.client.post(
        harness.url("/users"),
        json={"email": "Carol@Example.org", "name": "Carol", "role": "editor"},
        headers=harness.headers(),
    ).json()
    assert invited["member"]["status"] == "pending_invite"
    token = invited["invitation_token"]
    weak = harness.client.post("/v1/invitations/accept", json={"token": token, "password": "short"})
    assert weak.status_code == 422
    accepted = harness.client.post(
        "/v1/invitations/accept", json={"token": token, "password": "carol-password-1"}
    )
    assert accepted.status_code == 204
    again = harness.client.post(
        "/v1/invitations/accept", json={"token": token, "password": "carol-password-2"}
    )
    assert again.status_code == 401
    assert again.json()["code"] == "invitation.invalid"
    assert (
        _token(harness, email="carol@example.org", password="carol-password-1").status_code == 200
    )
    late = harness.client.post(
        harness.url("/users"),
        json={"email": "dave@example.org", "name": "Dave"},
        headers=harness.headers(),
    ).json()["invitation_token"]
    harness.clock.advance(dt.timedelta(days=8))
    expired = harness.client.post(
        "/v1/invitations/accept", json={"token": late, "password": "dave-password-1"}
    )
    assert expired.status_code == 401


def test_password_change(harness):
    headers = harness.headers()
    wrong = harness.client.post(
        "/v1/auth/password",
        json={"current_password": "not-it-at-all", "new_password": "a-new-password-1"},
        headers=headers,
    )
    assert wrong.status_code == 401
    with harness.runtime.db.transaction() as session:
        failed = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "user.password_change_failed")
        ).all()
        assert [(e.actor_id, e.outcome) for e in failed] == [(harness.admin_id, "failure")]
    changed = harness.client.post(
        "/v1/auth/password",
        json={"current_password": BOOTSTRAP_PASSWORD, "new_password": "a-new-password-1"},
        headers=headers,
    )
    assert changed.status_code == 204
    assert (
        _token(harness, email="admin@example.org", password=BOOTSTRAP_PASSWORD).status_code == 401
    )
    assert (
        _token(harness, email="admin@example.org", password="a-new-password-1").status_code == 200
    )


def test_password_change_revokes_earlier_tokens(harness):
    old = harness.headers()
    assert harness.client.get("/v1/auth/whoami", headers=old).status_code == 200
    harness.clock.advance(dt.timedelta(seconds=5))
    changed = harness.client.post(
        "/v1/auth/password",
        json={"current_password": BOOTSTRAP_PASSWORD, "new_password": "a-new-password-1"},
        headers=old,
    )
    assert changed.status_code == 204
    stale = harness.client.get("/v1/auth/whoami", headers=old)
    assert stale.status_code == 401
    assert stale.json()["code"] == "auth.revoked"
    fresh = _token(harness, email="admin@example.org", password="a-new-password-1")
    token = fresh.json()["access_token"]
    whoami = harness.client.get("/v1/auth/whoami", headers=harness.headers(token))
    assert whoami.status_code == 200


def test_access_denials_are_audited(harness):
    user_id, viewer = harness.add_user(Role.viewer)
    denied = harness.client.post(
        harness.url("/users"),
        json={"email": "z@example.org", "name": "Z"},
        headers=harness.headers(viewer),
    )
    assert denied.status_code == 403
    with harness.runtime.db.transaction() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "auth.access_denied")
        ).all()
        assert len(entries) == 1
        assert entries[0].actor_id == user_id
        assert entries[0].outcome == "denied"
        assert entries[0].request_id == denied.headers["x-request-id"]
