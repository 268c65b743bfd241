"""The attestation result token keys: published at /.well-known/jwks.json, stable across
manager processes (the key is stored sealed in the database), usable by PyJWT."""

from __future__ import annotations

import jwt
import pytest
from attest_helpers import Kit, Workload, simulation_pki, simulation_settings

from conftest import build_harness, make_settings


def test_jwks_is_public_and_shared_by_replicas(harness_factory, tmp_path, database_url):
    kit = Kit(harness_factory(**simulation_settings(tmp_path)), simulation_pki(tmp_path))
    first = kit.client.get("/.well-known/jwks.json")
    assert first.status_code == 200
    keys = first.json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "EC"
    assert keys[0]["alg"] == "ES256"
    assert "d" not in keys[0]
    # A second manager process on the same database publishes the same key.
    other = build_harness(make_settings(tmp_path, database_url, **simulation_settings(tmp_path)))
    try:
        assert other.client.get("/.well-known/jwks.json").json() == first.json()
    finally:
        other.client.close()
        other.runtime.db.dispose()


def test_token_verifies_only_with_its_managers_key(harness_factory, tmp_path):
    kit = Kit(harness_factory(**simulation_settings(tmp_path)), simulation_pki(tmp_path))
    kit.create_app("bank")
    platform = kit.platform("bank")
    kit.register_build("bank", platform)
    token = kit.attest(Workload.make(platform), "bank").json()["token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    jwks = jwt.PyJWKSet.from_dict(kit.client.get("/.well-known/jwks.json").json())
    claims = jwt.decode(
        token, key=jwks[header["kid"]].key, algorithms=["ES256"], options={"verify_exp": False}
    )
    assert claims["iss"] == "http://127.0.0.1:8443"
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(token, key=jwks[header["kid"]].key, algorithms=["HS256"])
    # Another installation (another database) has another key: the signature fails.
    stranger = build_harness(
        make_settings(tmp_path / "stranger", f"sqlite:///{tmp_path / 'stranger.db'}")
    )
    try:
        foreign = jwt.PyJWKSet.from_dict(stranger.client.get("/.well-known/jwks.json").json())
    finally:
        stranger.client.close()
        stranger.runtime.db.dispose()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            token, key=foreign.keys[0].key, algorithms=["ES256"], options={"verify_exp": False}
        )
