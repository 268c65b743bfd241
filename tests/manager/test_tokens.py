"""EAR tokens: interoperability with PyJWT through the JWKS, and refusal of anything altered."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from sanctum.errors import UsageError
from sanctum.manager.tokens import (
    EAR_PROFILE,
    SigningKey,
    SigningKeySet,
    TokenError,
    TrustVector,
    VerificationKey,
    WorkloadResult,
    b64url_decode,
    b64url_encode,
    ear_claims,
    issue_ear,
    keys_from_jwks,
    tier_of,
    verify_token,
)

ISSUER = "https://manager.sanctum.test"
NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def _result(**overrides: object) -> WorkloadResult:
    fields: dict[str, object] = {
        "tee": "sgx",
        "measurements": {"mrenclave": "aa" * 32, "mrsigner": "bb" * 32},
        "isvprodid": 7,
        "isvsvn": 3,
        "debug": False,
        "tcb_status": "SWHardeningNeeded",
        "advisory_ids": ("INTEL-SA-00334", "INTEL-SA-00615"),
        "qe_status": "UpToDate",
        "tcb_date": datetime(2025, 11, 12, tzinfo=UTC),
        "collateral_earliest_expiration": datetime(2026, 12, 20, tzinfo=UTC),
        "collateral_latest_issue": datetime(2026, 11, 20, tzinfo=UTC),
        "simulated": False,
        "app": "bank",
        "build": "build-1",
        "policy_hash": "cd" * 32,
        "vector": TrustVector(
            instance_identity=2, configuration=32, executables=2, hardware=32, runtime_opaque=2
        ),
        "nonce": b"\x01" * 32,
        "certificate_serial": 0xABC,
    }
    fields.update(overrides)
    return WorkloadResult(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def keys() -> SigningKeySet:
    return SigningKeySet(SigningKey.generate())


def _pyjwt_decode(
    token: str, jwks: Mapping[str, Any], *, require: Sequence[str] = ()
) -> dict[str, Any]:
    key_set = jwt.PyJWKSet.from_dict(dict(jwks))
    kid = jwt.get_unverified_header(token)["kid"]
    signing_key = next(k for k in key_set.keys if k.key_id == kid)
    return jwt.decode(
        token,
        signing_key.key,
        algorithms=["ES256"],
        issuer=ISSUER,
        options={"require": list(require)},
    )


def test_pyjwt_verifies_token_with_jwks(keys: SigningKeySet) -> None:
    now = datetime.now(UTC)  # PyJWT checks exp against the real clock.
    token = issue_ear(
        keys, _result(), issuer=ISSUER, now=now, ttl=timedelta(minutes=10), token_id="t-1"
    )
    jwks = json.loads(json.dumps(keys.jwks()))  # exactly what /.well-known/jwks.json serves
    claims = _pyjwt_decode(token, jwks, require=["exp", "iat", "iss"])
    assert claims["eat_profile"] == EAR_PROFILE
    assert claims["ear_status"] == "warning"
    appraisal = claims["submods"]["sgx-enclave"]
    assert appraisal["ear_trustworthiness_vector"] == {
        "instance-identity": 2,
        "configuration": 32,
        "executables": 2,
        "hardware": 32,
        "runtime-opaque": 2,
    }
    assert appraisal["ear_attester_claims"]["mrenclave"] == "aa" * 32
    assert appraisal["ear_attester_claims"]["isvsvn"] == 3
    assert appraisal["ear_verifier_claims"]["tcb_status"] == "SWHardeningNeeded"
    assert appraisal["ear_verifier_claims"]["app"] == "bank"
    assert appraisal["ear_verifier_claims"]["build"] == "build-1"
    assert appraisal["ear_verifier_claims"]["simulated"] is False
    assert appraisal["ear_verifier_claims"]["collateral_earliest_expiration"] == (
        "2026-12-20T00:00:00Z"
    )
    assert appraisal["ear_appraisal_policy_ids"] == ["urn:sanctum:policy:sha256:" + "cd" * 32]
    assert claims["eat_nonce"] == b64url_encode(b"\x01" * 32)
    assert claims["exp"] == claims["iat"] + 600


def test_pyjwt_rejects_tampered_tokens(keys: SigningKeySet) -> None:
    now = datetime.now(UTC)
    token = issue_ear(
        keys, _result(), issuer=ISSUER, now=now, ttl=timedelta(minutes=10), token_id="t-2"
    )
    jwks = keys.jwks()
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["submods"]["sgx-enclave"]["ear_verifier_claims"]["simulated"] = True
    forged_payload = b64url_encode(json.dumps(claims).encode())
    for forged in (
        f"{header}.{forged_payload}.{signature}",
        f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BA'}",
    ):
        with pytest.raises(jwt.InvalidSignatureError):
            _pyjwt_decode(forged, jwks)
        with pytest.raises(TokenError) as caught:
            keys.verify(forged, now=now, issuer=ISSUER)
        assert caught.value.code == "token.signature_invalid"


def test_pyjwt_rejects_expired_token(keys: SigningKeySet) -> None:
    token = issue_ear(
        keys,
        _result(),
        issuer=ISSUER,
        now=datetime.now(UTC) - timedelta(hours=2),
        ttl=timedelta(hours=1),
        token_id="t-3",
    )
    with pytest.raises(jwt.ExpiredSignatureError):
        _pyjwt_decode(token, keys.jwks())


def test_pyjwt_rejects_token_from_unpublished_key(keys: SigningKeySet) -> None:
    stranger = SigningKeySet(SigningKey.generate())
    token = issue_ear(
        stranger,
        _result(),
        issuer=ISSUER,
        now=datetime.now(UTC),
        ttl=timedelta(minutes=5),
        token_id="x",
    )
    key_set = jwt.PyJWKSet.from_dict(keys.jwks())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, key_set.keys[0].key, algorithms=["ES256"], issuer=ISSUER)
    with pytest.raises(TokenError) as caught:
        keys.verify(token, now=datetime.now(UTC))
    assert caught.value.code == "token.unknown_key"


def test_jwks_shape_and_rfc7638_kid() -> None:
    # RFC 7638 section 3.1 example uses RSA; for EC we recompute the thumbprint independently.
    private = ec.derive_private_key(12345, ec.SECP256R1())
    key = SigningKey.from_private_key(private)
    jwk = SigningKeySet(key).jwks()["keys"][0]
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("EC", "P-256", "sig", "ES256")
    canonical = json.dumps(
        {"crv": "P-256", "kty": "EC", "x": jwk["x"], "y": jwk["y"]}, separators=(",", ":")
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=")
    assert jwk["kid"] == expected.decode()
    numbers = private.public_key().public_numbers()
    assert b64url_decode(jwk["x"]) == numbers.x.to_bytes(32, "big")


def test_rotation_keeps_old_tokens_verifiable() -> None:
    first = SigningKeySet(SigningKey.generate())
    old_token = issue_ear(
        first, _result(), issuer=ISSUER, now=NOW, ttl=timedelta(hours=1), token_id="old"
    )
    second = first.rotate(SigningKey.generate())
    new_token = issue_ear(
        second, _result(), issuer=ISSUER, now=NOW, ttl=timedelta(hours=1), token_id="new"
    )
    assert [k["kid"] for k in second.jwks()["keys"]] == [second.active.kid, first.active.kid]
    for token in (old_token, new_token):
        assert second.verify(token, now=NOW, issuer=ISSUER)["iss"] == ISSUER
    with pytest.raises(TokenError):
        first.verify(new_token, now=NOW)
    third = second.rotate(SigningKey.generate(), keep=1)
    assert len(third.retired) == 1
    with pytest.raises(TokenError) as caught:
        third.verify(old_token, now=NOW)
    assert caught.value.code == "token.unknown_key"


def test_own_verifier_checks_times_and_issuer(keys: SigningKeySet) -> None:
    token = issue_ear(
        keys, _result(), issuer=ISSUER, now=NOW, ttl=timedelta(minutes=10), token_id="t"
    )
    assert keys.verify(token, now=NOW + timedelta(minutes=10), issuer=ISSUER)["jti"] == "t"
    cases = [
        (NOW + timedelta(minutes=11), ISSUER, "token.expired"),
        (NOW - timedelta(minutes=5), ISSUER, "token.not_yet_valid"),
        (NOW, "https://other.test", "token.issuer_mismatch"),
    ]
    for now, issuer, code in cases:
        with pytest.raises(TokenError) as caught:
            keys.verify(token, now=now, issuer=issuer)
        assert caught.value.code == code


def test_alg_none_and_other_algorithms_are_refused(keys: SigningKeySet) -> None:
    token = issue_ear(
        keys, _result(), issuer=ISSUER, now=NOW, ttl=timedelta(minutes=10), token_id="t"
    )
    _, payload, signature = token.split(".")
    for alg in ("none", "HS256", "ES384"):
        header = b64url_encode(json.dumps({"alg": alg, "kid": keys.active.kid}).encode())
        with pytest.raises(TokenError) as caught:
            keys.verify(f"{header}.{payload}.{signature}", now=NOW)
        assert caught.value.code == "token.algorithm_unsupported"


@pytest.mark.parametrize(
    "token", ["", "a.b", "a.b.c.d", "!!!.e30.AA", "e30=.e30.AA", "W10.e30.AA", "e30.e30.AA"]
)
def test_malformed_tokens(keys: SigningKeySet, token: str) -> None:
    with pytest.raises(TokenError):
        keys.verify(token, now=NOW)


def test_malformed_payload_and_signature(keys: SigningKeySet) -> None:
    header = b64url_encode(json.dumps({"alg": "ES256", "kid": keys.active.kid}).encode())
    no_exp = keys.sign({"iss": ISSUER})
    with pytest.raises(TokenError) as caught:
        keys.verify(no_exp, now=NOW)
    assert caught.value.code == "token.malformed"
    short_sig = f"{header}.{b64url_encode(b'{}')}.{b64url_encode(b'x' * 10)}"
    with pytest.raises(TokenError) as caught:
        keys.verify(short_sig, now=NOW)
    assert caught.value.code == "token.signature_invalid"


def test_verify_token_with_explicit_keys(keys: SigningKeySet) -> None:
    token = keys.sign({"exp": int(NOW.timestamp()) + 5})
    vk = VerificationKey.from_public_key(keys.active.private_key.public_key())
    assert verify_token(token, [vk], now=NOW) == {"exp": int(NOW.timestamp()) + 5}


def test_trust_tiers_and_vector_status() -> None:
    assert [tier_of(v) for v in (0, 1, -1, 2, 31, 32, 95, 96, 127, -128)] == [
        "none",
        "none",
        "none",
        "affirming",
        "affirming",
        "warning",
        "warning",
        "contraindicated",
        "contraindicated",
        "contraindicated",
    ]
    assert TrustVector().status() == "none"
    assert TrustVector(instance_identity=2, hardware=2).status() == "affirming"
    assert TrustVector(instance_identity=2, hardware=97).status() == "contraindicated"
    with pytest.raises(UsageError):
        TrustVector(hardware=128)


def test_tdx_claims_omit_isv_fields() -> None:
    claims = ear_claims(
        _result(tee="tdx", isvprodid=None, isvsvn=None, measurements={"mr_td": "ee" * 48}),
        issuer=ISSUER,
        now=NOW,
        ttl=timedelta(minutes=1),
        token_id="t",
    )
    attester = claims["submods"]["tdx-td"]["ear_attester_claims"]
    assert "isvsvn" not in attester
    assert attester["mr_td"] == "ee" * 48


def test_bad_parameters() -> None:
    with pytest.raises(UsageError):
        ear_claims(_result(), issuer=ISSUER, now=NOW, ttl=timedelta(0), token_id="t")
    with pytest.raises(UsageError):
        SigningKey.from_private_key(ec.generate_private_key(ec.SECP384R1()))


@given(
    text=st.text(max_size=200)
    | st.from_regex(
        r"[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,90}", fullmatch=True
    )
)
def test_garbage_tokens_only_raise_token_errors(text: str) -> None:
    keys = _FUZZ_KEYS
    with pytest.raises(TokenError):
        keys.verify(text, now=NOW)


_FUZZ_KEYS = SigningKeySet(SigningKey.from_private_key(ec.derive_private_key(7, ec.SECP256R1())))


def test_relying_party_verifies_with_fetched_jwks(keys: SigningKeySet) -> None:
    token = issue_ear(
        keys, _result(), issuer=ISSUER, now=NOW, ttl=timedelta(minutes=10), token_id="t"
    )
    fetched = json.loads(json.dumps(keys.jwks()))
    verifier_keys = keys_from_jwks(fetched)
    assert verify_token(token, verifier_keys, now=NOW, issuer=ISSUER)["jti"] == "t"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda k: {**k, "kty": "RSA"},
        lambda k: {**k, "crv": "P-384"},
        lambda k: {**k, "kid": "not-the-thumbprint"},
        lambda k: {**k, "x": k["y"]},  # not on the curve
        lambda k: {**k, "x": "AAAA"},
        lambda k: {**k, "d": "secret"},
        lambda k: {key: v for key, v in k.items() if key != "y"},
    ],
)
def test_bad_jwks_are_refused(keys: SigningKeySet, mutate: Any) -> None:
    jwk = keys.jwks()["keys"][0]
    with pytest.raises(TokenError) as caught:
        keys_from_jwks({"keys": [mutate(jwk)]})
    assert caught.value.code == "token.jwk_invalid"
    with pytest.raises(TokenError):
        keys_from_jwks({"keys": "nope"})


def test_signing_key_pem_round_trip() -> None:
    key = SigningKey.generate()
    again = SigningKey.from_pem(key.private_pem())
    assert again.kid == key.kid
    with pytest.raises(UsageError):
        SigningKey.from_pem(b"garbage")
