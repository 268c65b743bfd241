"""The whole attestation exchange with the pure building blocks, minus HTTP and the database.

The "workload" side uses only :mod:`sanctum.protocol` (as the launcher does); the "manager" side
uses the CA, the sealing and the token modules. The wire is JSON produced and parsed by the
shared models.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import PolicyBuilder, Store

from sanctum.errors import UsageError
from sanctum.manager.ca import (
    AttestationClaims,
    create_account_ca,
    issue_workload_certificate,
    load_csr,
    read_attestation_extension,
)
from sanctum.manager.tokens import SigningKey, SigningKeySet, TrustVector, WorkloadResult, issue_ear
from sanctum.protocol.binding import check_binding, spki_der
from sanctum.protocol.errors import BindingError, SealingError
from sanctum.protocol.messages import (
    AttestRequest,
    AttestResponse,
    ChallengeResponse,
    SealedBoxWire,
    SealedSecret,
    SealingContext,
)
from sanctum.protocol.sealing import seal, secret_aad
from sanctum.protocol.workload import (
    WorkloadKeyKind,
    build_csr,
    generate_workload_key,
    workload_report_data,
)

MANAGER = "https://manager.sanctum.test"
SECRETS = [("DB_PASSWORD", "env", "DB_PASSWORD", b"hunter2"), ("tls", "file", "/run/s/tls", b"x")]


def _manager_answers(
    request_json: str, issued_nonce: bytes, report_data: bytes
) -> tuple[str, dict[str, list[dict[str, str]]]]:
    """Play the manager: check, issue, seal, sign; return the response JSON."""
    now = datetime.now(UTC)
    request = AttestRequest.model_validate_json(request_json)
    assert request.nonce == issued_nonce
    csr = load_csr(request.csr)
    # The quote would be verified here; its report data must bind the nonce and the CSR key.
    check_binding(report_data, issued_nonce, spki_der(csr.public_key()))
    ca = create_account_ca("acme", now=now)
    claims = AttestationClaims(
        tee="sgx",
        measurement=b"\x01" * 32,
        signer=b"\x02" * 32,
        isvprodid=1,
        isvsvn=1,
        tcb_status="UpToDate",
        simulated=True,
    )
    cert = issue_workload_certificate(
        ca,
        csr,
        subject="bank.demo.local",
        sans=["bank.demo.local"],
        validity=timedelta(hours=1),
        serial=1001,
        attestation=claims,
        now=now,
    )
    context = SealingContext(manager_id=MANAGER, app=request.app, build="b-1", nonce=request.nonce)
    sealed = []
    for name, delivery, target, value in SECRETS:
        box = seal(
            csr.public_key(),
            value,
            info=context.info(),
            aad=secret_aad(name=name, delivery=delivery, target=target),
        )
        target_field = {"path": target} if delivery == "file" else {"env_name": target}
        sealed.append(
            SealedSecret.model_validate(
                {
                    "name": name,
                    "delivery": delivery,
                    **target_field,
                    "box": SealedBoxWire.from_box(box).model_dump(mode="json"),
                }
            )
        )
    keys = SigningKeySet(SigningKey.generate())
    token = issue_ear(
        keys,
        WorkloadResult(
            tee="sgx",
            measurements={"mrenclave": "01" * 32},
            isvprodid=1,
            isvsvn=1,
            debug=False,
            tcb_status="UpToDate",
            advisory_ids=(),
            qe_status="UpToDate",
            tcb_date=now,
            collateral_earliest_expiration=now + timedelta(days=30),
            collateral_latest_issue=now,
            simulated=True,
            app=request.app,
            build="b-1",
            policy_hash="00" * 32,
            vector=TrustVector(instance_identity=97, hardware=97),
            nonce=request.nonce,
        ),
        issuer=MANAGER,
        now=now,
        ttl=timedelta(minutes=5),
        token_id="tok-1",
    )
    pem = serialization.Encoding.PEM
    response = AttestResponse(
        certificate=cert.public_bytes(pem).decode(),
        chain=ca.chain_pem(),
        ca=ca.root_pem(),
        sealing=context,
        sealed_secrets=sealed,
        token=token,
        expires_at=cert.not_valid_after_utc,
    )
    return response.model_dump_json(), keys.jwks()


@pytest.mark.parametrize("kind", ["ec-p256", "rsa-2048"])
def test_full_exchange(kind: WorkloadKeyKind) -> None:
    nonce = bytes(range(32))
    challenge = ChallengeResponse.model_validate_json(
        ChallengeResponse(nonce=nonce, expires_at=datetime.now(UTC)).model_dump_json()
    )
    key = generate_workload_key(kind)
    csr = build_csr(key, common_name="bank.demo.local", sans=["bank.demo.local"])
    report_data = workload_report_data(challenge.nonce, key)
    request = AttestRequest(app="bank", quote=b"Q" * 1000, csr=csr, nonce=challenge.nonce)
    body, jwks = _manager_answers(request.model_dump_json(), nonce, report_data)

    response = AttestResponse.model_validate_json(body)
    assert b"hunter2" not in body.encode()
    secrets = response.open_secrets(key, expected_nonce=nonce, expected_app="bank")
    assert secrets == {"DB_PASSWORD": b"hunter2", "tls": b"x"}

    leaf = x509.load_pem_x509_certificate(response.certificate.encode())
    assert leaf.public_key() == key.public_key()
    root = x509.load_pem_x509_certificate(response.ca.encode())
    intermediates = [x509.load_pem_x509_certificate(p.encode()) for p in response.chain]
    verifier = (
        PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName("bank.demo.local"))
    )
    chain = verifier.verify(leaf, intermediates)
    assert chain[-1] == root
    assert read_attestation_extension(leaf).simulated is True

    key_set = jwt.PyJWKSet.from_dict(dict(jwks))
    claims = jwt.decode(response.token, key_set.keys[0].key, algorithms=["ES256"], issuer=MANAGER)
    assert claims["ear_status"] == "contraindicated"  # simulated evidence, honestly labelled
    assert claims["submods"]["sgx-enclave"]["ear_verifier_claims"]["app"] == "bank"

    # Another workload key cannot open the secrets.
    with pytest.raises(SealingError):
        response.open_secrets(
            generate_workload_key(kind), expected_nonce=nonce, expected_app="bank"
        )


def test_swapped_csr_is_refused_by_the_binding() -> None:
    nonce = b"\x07" * 32
    quoted_key = generate_workload_key()
    other_key = generate_workload_key()
    report_data = workload_report_data(nonce, quoted_key)
    request = AttestRequest(
        app="bank",
        quote=b"Q" * 1000,
        csr=build_csr(other_key, common_name="bank.demo.local"),
        nonce=nonce,
    )
    with pytest.raises(BindingError) as caught:
        _manager_answers(request.model_dump_json(), nonce, report_data)
    assert caught.value.code == "attest.binding_mismatch"


def test_workload_key_kinds() -> None:
    assert isinstance(generate_workload_key("ec-p256"), ec.EllipticCurvePrivateKey)
    key = generate_workload_key("rsa-3072")
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072
    with pytest.raises(UsageError):
        generate_workload_key("dsa")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        build_csr(generate_workload_key(), common_name="")
    csr = x509.load_pem_x509_csr(
        build_csr(generate_workload_key(), common_name="w", sans=["10.0.0.1", "w.example"]).encode()
    )
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["w.example"]
