"""End to end over HTTPS (SQLite and PostgreSQL) with the simulated platform, checked with
``openssl``; the account CA endpoint; certificate records, revocation and the CRL."""

from __future__ import annotations

import subprocess

import jwt
import pytest
from attest_helpers import Kit, Workload, https_server, simulation_pki, simulation_settings
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import START
from sanctum.manager.ca import ATTESTATION_EXTENSION_OID
from sanctum.manager.models import Role
from sanctum.manager.models_attestation import AccountCaRecord
from sanctum.protocol.messages import AttestResponse


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    return Kit(harness_factory(**simulation_settings(tmp_path)), simulation_pki(tmp_path))


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_end_to_end_over_https_with_openssl(kit, tmp_path, require_tool):
    require_tool("openssl", package="openssl")
    with https_server(kit.harness.app, tmp_path / "https") as http:
        kit.http = http
        kit.create_app("bank")
        platform = kit.platform("bank")
        kit.register_build("bank", platform)
        workload = Workload.make(platform, sans=("bank.demo.local",))
        nonce = kit.challenge()
        response = http.post("/v1/attest", json=workload.request("bank", nonce))
        assert response.status_code == 200, response.text
        result = AttestResponse.model_validate_json(response.text)
        ca = http.get(kit.harness.url("/ca"), headers=kit.harness.headers()).json()
        jwks = http.get("/.well-known/jwks.json").json()
    assert ca["root"] == result.ca
    assert ca["chain"] == result.chain
    (tmp_path / "root.pem").write_text(result.ca)
    (tmp_path / "chain.pem").write_text("".join(result.chain))
    (tmp_path / "cert.pem").write_text(result.certificate)
    at = str(int(START.timestamp()) + 60)
    verified = _openssl(
        "verify",
        "-CAfile",
        str(tmp_path / "root.pem"),
        "-untrusted",
        str(tmp_path / "chain.pem"),
        "-purpose",
        "sslserver",
        "-attime",
        at,
        str(tmp_path / "cert.pem"),
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip().endswith("OK")
    text = _openssl("x509", "-in", str(tmp_path / "cert.pem"), "-noout", "-text").stdout
    assert "DNS:bank.demo.local" in text
    assert ATTESTATION_EXTENSION_OID.dotted_string in text
    # Without the intermediate, or against another account's root, openssl refuses.
    alone = _openssl(
        "verify", "-CAfile", str(tmp_path / "root.pem"), "-attime", at, str(tmp_path / "cert.pem")
    )
    assert alone.returncode != 0
    assert result.open_secrets(workload.key, expected_nonce=nonce, expected_app="bank") == {
        "DB_PASSWORD": b"hunter2"
    }
    kid = jwt.get_unverified_header(result.token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid].key
    claims = jwt.decode(result.token, key=key, algorithms=["ES256"], options={"verify_exp": False})
    assert claims["submods"]["sgx-enclave"]["ear_verifier_claims"]["build"] == result.sealing.build


def test_ca_is_per_account_and_stable(kit):
    first = kit.client.get(kit.harness.url("/ca"), headers=kit.harness.headers()).json()
    second = kit.client.get(kit.harness.url("/ca"), headers=kit.harness.headers()).json()
    assert first == second
    other = kit.client.post(
        "/v1/accounts", json={"name": "acme"}, headers=kit.harness.headers()
    ).json()["id"]
    theirs = kit.client.get(f"/v1/accounts/{other}/ca", headers=kit.harness.headers()).json()
    assert theirs["root"] != first["root"]
    root = x509.load_pem_x509_certificate(first["root"].encode())
    issuing = x509.load_pem_x509_certificate(first["chain"][0].encode())
    issuing.verify_directly_issued_by(root)
    assert kit.audit_actions("certificate.ca_created")


def test_ca_private_keys_are_sealed_at_rest(kit, tmp_path):
    kit.client.get(kit.harness.url("/ca"), headers=kit.harness.headers())
    # The request that created the CA does not cache it (ADR 0120): the next one reads the
    # committed record and caches it.
    assert kit.harness.app.state.attestation.ca_cache.get(kit.harness.account_id) is None
    kit.client.get(kit.harness.url("/ca"), headers=kit.harness.headers())
    ca = kit.harness.app.state.attestation.ca_cache.get(kit.harness.account_id)
    secrets = [
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )[-32:]
        for key in (ca.root_key, ca.issuing_key)
    ]
    with kit.harness.runtime.db.transaction() as session:
        stored = session.get(AccountCaRecord, kit.harness.account_id)
        blobs = stored.root_key_sealed + stored.issuing_key_sealed
    assert b"PRIVATE KEY" not in blobs
    for secret in secrets:
        assert secret not in blobs
    if kit.harness.runtime.db.backend == "sqlite":
        kit.harness.runtime.db.dispose()
        raw = b"".join(path.read_bytes() for path in tmp_path.glob("manager.db*") if path.is_file())
        assert b"PRIVATE KEY" not in raw
        for secret in secrets:
            assert secret not in raw


def test_revocation_and_crl(kit):
    kit.create_app("bank")
    platform = kit.platform("bank")
    kit.register_build("bank", platform)
    serials = []
    for _ in range(2):
        response = kit.attest(Workload.make(platform), "bank")
        certificate = x509.load_pem_x509_certificate(response.json()["certificate"].encode())
        serials.append(format(certificate.serial_number, "x"))
    crl = x509.load_der_x509_crl(kit.client.get(kit.harness.url("/ca/crl")).content)
    assert list(crl) == []
    _, viewer = kit.harness.add_user(Role.viewer)
    denied = kit.client.post(
        kit.harness.url(f"/certificates/{serials[0]}/revoke"), headers=kit.harness.headers(viewer)
    )
    assert denied.status_code == 403
    revoked = kit.client.post(
        kit.harness.url(f"/certificates/{serials[0]}/revoke"),
        json={"reason": "keyCompromise"},
        headers=kit.harness.headers(kit.editor_token),
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    again = kit.client.post(
        kit.harness.url(f"/certificates/{serials[0]}/revoke"), headers=kit.harness.headers()
    )
    assert again.json()["code"] == "certificate.already_revoked"
    pem = kit.client.get(kit.harness.url("/ca/crl"), params={"format": "pem"})
    assert pem.headers["content-type"].startswith("application/x-pem-file")
    crl = x509.load_pem_x509_crl(pem.content)
    ca = kit.client.get(kit.harness.url("/ca"), headers=kit.harness.headers()).json()
    issuing = x509.load_pem_x509_certificate(ca["chain"][0].encode())
    assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    entry = crl.get_revoked_certificate_by_serial_number(int(serials[0], 16))
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(int(serials[1], 16)) is None
    listed = kit.client.get(
        kit.harness.url("/certificates"), params={"status": "active"}, headers=kit.harness.headers()
    ).json()
    assert [c["serial"] for c in listed] == [serials[1]]


def test_unknown_certificate(kit):
    response = kit.client.get(kit.harness.url("/certificates/abc"), headers=kit.harness.headers())
    assert response.status_code == 404
    assert response.json()["code"] == "certificate.not_found"
