"""Encrypted-directory keys in the manager: release on attestation, policies, export, wire form."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from attest_helpers import Kit, Workload, simulation_pki, simulation_settings
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from sanctum.manager.models import Role
from sanctum.manager.models_encfs import EncryptedDirKey, key_context
from sanctum.manager.services import encrypted_dirs
from sanctum.protocol.errors import SealingError
from sanctum.protocol.messages import AttestResponse, SealedDirKey, dir_key_aad

DIRS = ["/data", "/var/lib/db"]


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    return Kit(harness_factory(**simulation_settings(tmp_path)), simulation_pki(tmp_path))


def _attest(kit: Kit, label: str) -> tuple[AttestResponse, Workload, bytes]:
    workload = Workload.make(kit.platform(label), sans=("bank.demo.local",))
    nonce = kit.challenge()
    response = kit.client.post("/v1/attest", json=workload.request("bank", nonce))
    assert response.status_code == 200, response.text
    return AttestResponse.model_validate_json(response.content), workload, nonce


def _keys(kit: Kit, label: str) -> dict[str, bytes]:
    answer, workload, nonce = _attest(kit, label)
    opened = answer.open_dir_keys(workload.key, expected_nonce=nonce, expected_app="bank")
    assert [key.version for key in opened.values()] == [1] * len(opened)
    return {path: key.key for path, key in opened.items()}


def _set_policy(kit: Kit, policy: str, token: str | None = None) -> Any:
    return kit.client.put(
        kit.harness.url("/apps/bank/encrypted-dirs/policy"),
        json={"key_policy": policy},
        headers=kit.harness.headers(token),
    )


def test_attestation_releases_one_sealed_key_per_directory(kit):
    kit.create_app("bank", encrypted_dirs=DIRS)
    kit.register_build("bank", kit.platform("v1"))
    first = _keys(kit, "v1")
    assert sorted(first) == DIRS
    assert all(len(key) == 32 for key in first.values())
    assert first["/data"] != first["/var/lib/db"]
    # A restart of the same build gets the same keys; they were created (and audited) once.
    assert _keys(kit, "v1") == first
    assert len(kit.audit_actions("app.encrypted_dir_key_created")) == 2
    with kit.harness.runtime.db.transaction() as session:
        rows = session.scalars(select(EncryptedDirKey)).all()
        assert {row.path for row in rows} == set(DIRS)
        for row in rows:
            assert first[row.path] not in row.sealed_key  # Sealed at rest, not in clear.


def test_app_without_encrypted_dirs_gets_none(kit):
    kit.create_app("bank")
    kit.register_build("bank", kit.platform("v1"))
    answer, _, _ = _attest(kit, "v1")
    assert answer.sealed_dir_keys == []


def test_boxes_are_bound_to_attestation_directory_and_key(kit):
    kit.create_app("bank", encrypted_dirs=DIRS)
    kit.register_build("bank", kit.platform("v1"))
    answer, workload, nonce = _attest(kit, "v1")
    with pytest.raises(SealingError) as wrong_nonce:
        answer.open_dir_keys(workload.key, expected_nonce=b"\0" * 32, expected_app="bank")
    assert wrong_nonce.value.code == "sealing.context_mismatch"
    with pytest.raises(SealingError):
        answer.open_dir_keys(
            ec.generate_private_key(ec.SECP256R1()), expected_nonce=nonce, expected_app="bank"
        )
    # Swapping the boxes of two directories makes both fail to open.
    first, second = answer.sealed_dir_keys
    swapped = answer.model_copy(
        update={
            "sealed_dir_keys": [
                first.model_copy(update={"box": second.box}),
                second.model_copy(update={"box": first.box}),
            ]
        }
    )
    with pytest.raises(SealingError):
        swapped.open_dir_keys(workload.key, expected_nonce=nonce, expected_app="bank")
    # Claiming another version changes the associated data too.
    bumped = answer.model_copy(
        update={"sealed_dir_keys": [first.model_copy(update={"version": 2})]}
    )
    with pytest.raises(SealingError):
        bumped.open_dir_keys(workload.key, expected_nonce=nonce, expected_app="bank")
    doubled = answer.model_copy(update={"sealed_dir_keys": [first, first]})
    with pytest.raises(SealingError) as duplicate:
        doubled.open_dir_keys(workload.key, expected_nonce=nonce, expected_app="bank")
    assert duplicate.value.code == "sealing.duplicate_dir"


def test_same_build_policy_gives_each_build_its_own_key(kit):
    kit.create_app("bank", encrypted_dirs=["/data"])
    kit.register_build("bank", kit.platform("v1"))
    kit.register_build("bank", kit.platform("v2"))
    assert _keys(kit, "v1") != _keys(kit, "v2")


def test_app_builds_policy_shares_one_key_and_is_administrator_only(kit):
    kit.create_app("bank", encrypted_dirs=["/data"])
    kit.register_build("bank", kit.platform("v1"))
    kit.register_build("bank", kit.platform("v2"))
    refused = _set_policy(kit, "app_builds", kit.editor_token)
    assert refused.status_code == 403, refused.text
    response = _set_policy(kit, "app_builds")
    assert response.status_code == 200, response.text
    assert response.json()["key_policy"] == "app_builds"
    assert _keys(kit, "v1") == _keys(kit, "v2")
    [entry] = kit.audit_actions("app.encrypted_dir_policy_set")
    assert entry.details == {"previous": "same_build", "policy": "app_builds"}
    listed = kit.client.get(
        kit.harness.url("/apps/bank/encrypted-dirs"), headers=kit.harness.headers(kit.editor_token)
    ).json()
    assert listed["directories"] == ["/data"]
    assert [(k["path"], k["scope"], k["version"]) for k in listed["keys"]] == [("/data", "app", 1)]
    assert "key" not in listed["keys"][0]


def test_unknown_policy_is_rejected(kit):
    kit.create_app("bank", encrypted_dirs=["/data"])
    assert _set_policy(kit, "anyone").status_code == 422


def test_key_export_is_administrator_only_audited_and_matches_the_released_key(kit):
    kit.create_app("bank", encrypted_dirs=DIRS)
    build = kit.register_build("bank", kit.platform("v1"))
    released = _keys(kit, "v1")
    url = kit.harness.url("/apps/bank/encrypted-dirs/var:lib:db/key")
    denied = kit.client.get(
        url, params={"build": build["id"]}, headers=kit.harness.headers(kit.editor_token)
    )
    assert denied.status_code == 403
    # Under same_build the build must be named.
    missing = kit.client.get(url, headers=kit.harness.headers())
    assert missing.status_code == 400
    assert missing.json()["code"] == "encrypted_dir.build_invalid"
    response = kit.client.get(url, params={"build": build["id"]}, headers=kit.harness.headers())
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert base64.b64decode(body["key"]) == released["/var/lib/db"]
    assert (body["path"], body["version"], body["created"]) == ("/var/lib/db", 1, False)
    [entry] = kit.audit_actions("app.encrypted_dir_key_exported")
    assert entry.details["path"] == "/var/lib/db"
    assert entry.severity == "warning"
    unknown = kit.client.get(
        kit.harness.url("/apps/bank/encrypted-dirs/nope/key"),
        params={"build": build["id"]},
        headers=kit.harness.headers(),
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "encrypted_dir.not_found"


def test_key_export_creates_a_missing_key_for_pre_encryption(kit):
    kit.create_app("bank", encrypted_dirs=["/data"])
    kit.register_build("bank", kit.platform("v1"))
    assert _set_policy(kit, "app_builds").status_code == 200
    response = kit.client.get(
        kit.harness.url("/apps/bank/encrypted-dirs/data/key"), headers=kit.harness.headers()
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] is True
    # The first attested instance then receives the key the operator encrypted with.
    assert _keys(kit, "v1")["/data"] == base64.b64decode(response.json()["key"])
    # Under app_builds a build is superfluous and refused.
    refused = kit.client.get(
        kit.harness.url("/apps/bank/encrypted-dirs/data/key"),
        params={"build": "whatever"},
        headers=kit.harness.headers(),
    )
    assert refused.status_code in (400, 404)


def test_refused_attestation_creates_and_releases_no_key(kit):
    kit.create_app("bank", encrypted_dirs=["/data"])
    kit.register_build("bank", kit.platform("v1"), approve=False)
    workload = Workload.make(kit.platform("v1"), sans=("bank.demo.local",))
    response = kit.client.post("/v1/attest", json=workload.request("bank", kit.challenge()))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "attest.build_not_allowlisted"
    assert "sealed_dir_keys" not in response.text
    with kit.harness.runtime.db.transaction() as session:
        assert session.scalars(select(EncryptedDirKey)).all() == []


def test_stored_key_is_bound_to_its_identity(kit):
    kit.create_app("bank", encrypted_dirs=["/data"])
    kit.register_build("bank", kit.platform("v1"))
    _keys(kit, "v1")
    runtime = kit.harness.runtime
    with runtime.db.transaction() as session:
        row = session.scalars(select(EncryptedDirKey)).one()
        context = key_context(row.app_id, row.scope, row.path, row.version)
        assert len(runtime.box.open(session, row.sealed_key, context=context)) == 32
        with pytest.raises(Exception) as moved:
            runtime.box.open(
                session, row.sealed_key, context=key_context(row.app_id, "app", "/data", 1)
            )
        assert getattr(moved.value, "code", "").startswith("secret.")


@pytest.mark.parametrize("path", ["data", "/a/../b", "/a\x00b", "/"])
def test_wire_refuses_bad_directory_paths(path):
    box = {"suite": "hpke-p256-sha256-aes256gcm", "enc": "", "ciphertext": ""}
    with pytest.raises(ValueError, match=r"path|at least"):
        SealedDirKey.model_validate({"path": path, "version": 1, "box": box})


def test_aad_names_path_and_version():
    assert dir_key_aad(path="/a", version=1) != dir_key_aad(path="/a", version=2)
    assert dir_key_aad(path="/a", version=1) != dir_key_aad(path="/b", version=1)
    # Length prefixes keep path and version apart.
    assert dir_key_aad(path="/a", version=1).startswith(b"sanctum/encrypted-dir/v1")


def test_viewer_sees_the_policy_without_keys(kit):
    kit.create_app("bank", encrypted_dirs=["/data"])
    _, viewer = kit.harness.add_user(Role.viewer)
    ok = kit.client.get(
        kit.harness.url("/apps/bank/encrypted-dirs"), headers=kit.harness.headers(viewer)
    )
    assert ok.status_code == 200
    assert ok.json()["key_policy"] == "same_build"


def test_a_concurrently_created_key_wins_over_a_second_creation(kit, monkeypatch):
    kit.create_app("bank", encrypted_dirs=["/data"])
    kit.register_build("bank", kit.platform("v1"))
    first = _keys(kit, "v1")
    real_current = encrypted_dirs._current
    calls: list[int] = []

    def no_live(*args: Any) -> Any:
        # The bulk lookup misses, as if another attestation had not committed yet.
        calls.append(1)
        return {}

    def stale(*args: Any) -> Any:
        # So does the single lookup before the insertion; the one after the conflict finds it.
        calls.append(2)
        return None if calls.count(2) == 1 else real_current(*args)

    monkeypatch.setattr(encrypted_dirs, "_live_keys", no_live)
    monkeypatch.setattr(encrypted_dirs, "_current", stale)
    assert _keys(kit, "v1") == first
    assert calls == [1, 2, 2]
    assert len(kit.audit_actions("app.encrypted_dir_key_created")) == 1
