from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from sanctum.protocol.errors import SealingError
from sanctum.protocol.messages import (
    AttestRequest,
    AttestResponse,
    ChallengeResponse,
    Collateral,
    SealedBoxWire,
    SealedSecret,
    SealingContext,
    VerifyEvidenceRequest,
)
from sanctum.protocol.sealing import seal

NONCE = bytes(range(32))


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def csr_pem(key: ec.EllipticCurvePrivateKey) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank.demo.local")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_challenge_round_trips_as_base64() -> None:
    expires = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    wire = ChallengeResponse(nonce=NONCE, expires_at=expires).model_dump_json()
    body = json.loads(wire)
    assert body["nonce"] == base64.b64encode(NONCE).decode()
    assert ChallengeResponse.model_validate_json(wire).nonce == NONCE


def test_challenge_refuses_short_nonce_and_naive_time() -> None:
    with pytest.raises(ValidationError):
        ChallengeResponse(nonce=b"short", expires_at=datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValidationError):
        ChallengeResponse.model_validate(
            {"nonce": base64.b64encode(NONCE).decode(), "expires_at": "2026-01-01T00:00:00"}
        )


def test_attest_request_parses_from_json(csr_pem: str) -> None:
    body = {
        "app": "bank",
        "quote": base64.b64encode(b"q" * 600).decode(),
        "csr": csr_pem,
        "nonce": base64.b64encode(NONCE).decode(),
    }
    request = AttestRequest.model_validate_json(json.dumps(body))
    assert request.quote == b"q" * 600
    assert request.nonce == NONCE
    assert request.collateral is None
    assert json.loads(request.model_dump_json())["quote"] == body["quote"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quote", "not base64!"),
        ("quote", "cXVvdGU"),  # missing padding
        ("quote", base64.urlsafe_b64encode(b"\xfb\xff" * 40).decode()),  # base64url
        ("nonce", base64.b64encode(b"tiny").decode()),
        ("csr", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        ("app", ""),
        ("surprise", "field"),
    ],
)
def test_attest_request_refuses_malformed_fields(csr_pem: str, field: str, value: str) -> None:
    body = {
        "app": "bank",
        "quote": base64.b64encode(b"q" * 600).decode(),
        "csr": csr_pem,
        "nonce": base64.b64encode(NONCE).decode(),
        field: value,
    }
    with pytest.raises(ValidationError):
        AttestRequest.model_validate(body)


def test_attest_request_with_collateral(csr_pem: str) -> None:
    collateral = Collateral(
        pck_crl_issuer_chain="chain",
        root_ca_crl=b"\x30\x00",
        pck_crl=b"\x30\x01",
        tcb_info_issuer_chain="chain",
        tcb_info='{"tcbInfo":{}}',
        tcb_info_signature=b"\x01" * 64,
        qe_identity_issuer_chain="chain",
        qe_identity='{"enclaveIdentity":{}}',
        qe_identity_signature=b"\x02" * 64,
    )
    request = AttestRequest(
        app="bank", quote=b"q" * 600, csr=csr_pem, nonce=NONCE, collateral=collateral
    )
    again = AttestRequest.model_validate_json(request.model_dump_json())
    assert again == request
    assert again.collateral is not None
    assert again.collateral.tcb_info_signature == b"\x01" * 64


@pytest.mark.parametrize(
    "fields",
    [
        {"delivery": "file"},
        {"delivery": "file", "path": "relative/path"},
        {"delivery": "file", "path": "/run/../etc/shadow"},
        {"delivery": "file", "path": "/run/s", "env_name": "X"},
        {"delivery": "env"},
        {"delivery": "env", "env_name": "1BAD"},
        {"delivery": "env", "env_name": "A=B"},
        {"delivery": "env", "env_name": "OK", "path": "/run/s"},
        {"delivery": "stdin", "env_name": "OK"},
    ],
)
def test_sealed_secret_targets_are_validated(fields: dict[str, str]) -> None:
    box = {"suite": "hpke-p256-sha256-aes256gcm", "enc": "AA==", "ciphertext": "AA=="}
    with pytest.raises(ValidationError):
        SealedSecret.model_validate({"name": "S", "box": box, **fields})


def _response(key: ec.EllipticCurvePrivateKey, context: SealingContext) -> AttestResponse:
    secrets = []
    for name, delivery, target, value in [
        ("DB_PASSWORD", "env", "DB_PASSWORD", b"hunter2"),
        ("tls-extra", "file", "/run/secrets/extra", b"\x00\x01binary"),
    ]:
        target_field = {"path": target} if delivery == "file" else {"env_name": target}
        shell = SealedSecret.model_validate(
            {
                "name": name,
                "delivery": delivery,
                **target_field,
                "box": {"suite": "hpke-p256-sha256-aes256gcm", "enc": "", "ciphertext": ""},
            }
        )
        box = seal(key.public_key(), value, info=context.info(), aad=shell.aad())
        secrets.append(shell.model_copy(update={"box": SealedBoxWire.from_box(box)}))
    return AttestResponse(
        certificate="-----BEGIN CERTIFICATE-----",
        chain=["-----BEGIN CERTIFICATE-----"],
        ca="-----BEGIN CERTIFICATE-----",
        sealing=context,
        sealed_secrets=secrets,
        token="a.b.c",
        expires_at=datetime(2026, 12, 1, tzinfo=UTC),
    )


def test_response_round_trip_and_open_secrets(key: ec.EllipticCurvePrivateKey) -> None:
    context = SealingContext(manager_id="mgr", app="bank", build="b1", nonce=NONCE)
    wire = _response(key, context).model_dump_json()
    parsed = AttestResponse.model_validate_json(wire)
    assert b"hunter2" not in wire.encode()
    opened = parsed.open_secrets(key, expected_nonce=NONCE, expected_app="bank")
    assert opened == {"DB_PASSWORD": b"hunter2", "tls-extra": b"\x00\x01binary"}


def test_response_ignores_unknown_fields(key: ec.EllipticCurvePrivateKey) -> None:
    context = SealingContext(manager_id="mgr", app="bank", build="b1", nonce=NONCE)
    body = json.loads(_response(key, context).model_dump_json())
    body["added_in_a_later_version"] = 1
    assert AttestResponse.model_validate(body).token == "a.b.c"


def test_open_secrets_checks_the_context(key: ec.EllipticCurvePrivateKey) -> None:
    context = SealingContext(manager_id="mgr", app="bank", build="b1", nonce=NONCE)
    response = _response(key, context)
    for nonce, app in [(bytes(32), "bank"), (NONCE, "shop")]:
        with pytest.raises(SealingError) as caught:
            response.open_secrets(key, expected_nonce=nonce, expected_app=app)
        assert caught.value.code == "sealing.context_mismatch"


def test_swapped_secret_targets_do_not_open(key: ec.EllipticCurvePrivateKey) -> None:
    context = SealingContext(manager_id="mgr", app="bank", build="b1", nonce=NONCE)
    body = json.loads(_response(key, context).model_dump_json())
    body["sealed_secrets"][0]["env_name"] = "OTHER_VAR"
    with pytest.raises(SealingError) as caught:
        AttestResponse.model_validate(body).open_secrets(
            key, expected_nonce=NONCE, expected_app="bank"
        )
    assert caught.value.code == "sealing.invalid"


def test_changed_build_in_context_does_not_open(key: ec.EllipticCurvePrivateKey) -> None:
    context = SealingContext(manager_id="mgr", app="bank", build="b1", nonce=NONCE)
    body = json.loads(_response(key, context).model_dump_json())
    body["sealing"]["build"] = "b2"
    with pytest.raises(SealingError):
        AttestResponse.model_validate(body).open_secrets(
            key, expected_nonce=NONCE, expected_app="bank"
        )


def test_verify_evidence_request() -> None:
    body = {"app": "bank", "quote": base64.b64encode(b"q" * 100).decode()}
    request = VerifyEvidenceRequest.model_validate_json(json.dumps(body))
    assert request.quote == b"q" * 100
    assert request.collateral is None
    with pytest.raises(ValidationError):
        VerifyEvidenceRequest.model_validate({**body, "csr": "not allowed here"})
