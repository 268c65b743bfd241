"""The attestation protocol through the API, with the simulated platform (SQLite and PostgreSQL):
an allowlisted build gets its certificate, secrets and token; every refusal issues nothing."""

from __future__ import annotations

import base64
import datetime as dt
import os
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from attest_helpers import Kit, Workload, simulation_pki, simulation_settings
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from conftest import START, build_harness, make_settings
from sanctum.manager.ca import read_attestation_extension
from sanctum.platforms.simulated import TcbDial
from sanctum.protocol.errors import SealingError
from sanctum.protocol.messages import AttestResponse
from sanctum.protocol.workload import generate_workload_key


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    pki = simulation_pki(tmp_path)
    return Kit(harness_factory(**simulation_settings(tmp_path)), pki)


@pytest.fixture
def bank(kit):
    """An app 'bank' with an approved domain, a secret and an allowlisted simulated build."""
    kit.create_app("bank")
    platform = kit.platform("bank")
    build = kit.register_build("bank", platform)
    return platform, build


def _refused(kit: Kit, response, code: str, before: int) -> dict:
    assert response.status_code in {403, 404, 409, 422}, response.text
    body = response.json()
    assert body["code"] == code, body
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "sealed_secrets" not in body
    assert "certificate" not in body
    assert kit.certificate_count() == before
    refusals = kit.audit_actions("attestation.refused")
    assert refusals
    assert refusals[-1].details["code"] == code
    return body


def test_allowlisted_build_gets_certificate_secrets_and_token(kit, bank):
    platform, build = bank
    workload = Workload.make(platform, sans=("bank.demo.local",))
    nonce = kit.challenge()
    response = kit.client.post("/v1/attest", json=workload.request("bank", nonce, instance="pod-1"))
    assert response.status_code == 200, response.text
    result = AttestResponse.model_validate_json(response.text)

    certificate = x509.load_pem_x509_certificate(result.certificate.encode())
    root = x509.load_pem_x509_certificate(result.ca.encode())
    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in result.chain]
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(kit.harness.clock.now())
        .build_server_verifier(x509.DNSName("bank.demo.local"))
    )
    verifier.verify(certificate, chain)  # Raises unless the chain and the SAN are right.
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["bank.demo.local"]
    claims = read_attestation_extension(certificate)
    assert claims.measurement == platform.identity.mr_enclave
    assert claims.simulated is True
    assert claims.debug is False
    assert claims.tcb_status == "UpToDate"

    # The secrets open with the workload's key only.
    opened = result.open_secrets(workload.key, expected_nonce=nonce, expected_app="bank")
    assert opened == {"DB_PASSWORD": b"hunter2"}
    with pytest.raises(SealingError):
        result.open_secrets(generate_workload_key(), expected_nonce=nonce, expected_app="bank")

    # The token verifies against the published JWKS with a standard JWT library.
    jwks = kit.client.get("/.well-known/jwks.json").json()
    header = jwt.get_unverified_header(result.token)
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]].key
    token = jwt.decode(
        result.token,
        key=key,
        algorithms=["ES256"],
        issuer="http://127.0.0.1:8443",
        options={"verify_exp": False},  # The harness's clock is fixed in the past.
    )
    assert token["exp"] - token["iat"] == 3600
    assert token["eat_nonce"] == base64.urlsafe_b64encode(nonce).rstrip(b"=").decode()
    submod = token["submods"]["sgx-enclave"]
    assert submod["ear_verifier_claims"]["build"] == build["id"]
    assert submod["ear_verifier_claims"]["simulated"] is True
    assert submod["ear_status"] == "contraindicated"  # Simulated evidence is never trustworthy.
    tampered = result.token[:-4] + ("AAAA" if not result.token.endswith("AAAA") else "BBBB")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tampered, key=key, algorithms=["ES256"], options={"verify_exp": False})

    # Recorded, audited, counted; the instance's last attestation is kept.
    listed = kit.client.get(kit.harness.url("/certificates"), headers=kit.harness.headers())
    assert [c["serial"] for c in listed.json()] == [format(certificate.serial_number, "x")]
    accepted = kit.audit_actions("attestation.accepted")
    assert accepted[-1].details["build_id"] == build["id"]
    instances = kit.client.get(
        kit.harness.url("/apps/bank/instances"), headers=kit.harness.headers()
    ).json()
    assert [(i["instance"], i["attestations"]) for i in instances] == [("pod-1", 1)]
    metrics = kit.client.get("/metrics").text
    assert 'sanctum_attestations_total{code="ok",endpoint="attest",outcome="accepted"} 1.0' in (
        metrics
    )


def test_renewal_updates_the_instance(kit, bank):
    platform, _ = bank
    for _ in range(2):
        workload = Workload.make(platform)
        response = kit.attest(workload, "bank", instance="pod-7")
        assert response.status_code == 200, response.text
        kit.harness.clock.advance(dt.timedelta(minutes=5))
    instances = kit.client.get(
        kit.harness.url("/apps/bank/instances"), headers=kit.harness.headers()
    ).json()
    assert instances[0]["attestations"] == 2
    assert instances[0]["last_seen_at"] > instances[0]["first_seen_at"]


def test_no_sans_requested_gets_every_approved_domain(kit):
    kit.create_app("multi", domains=("a.demo.local", "10.0.0.7"))
    platform = kit.platform("multi")
    kit.register_build("multi", platform)
    response = kit.attest(Workload.make(platform), "multi")
    assert response.status_code == 200, response.text
    certificate = x509.load_pem_x509_certificate(response.json()["certificate"].encode())
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["a.demo.local"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]


@pytest.mark.parametrize(
    ("domains", "configured", "expected"),
    [
        (("bank.demo.local",), "evil.example.com", "bank.demo.local"),
        (("a.demo.local", "b.demo.local"), "B.demo.local", "b.demo.local"),
        ((), "evil.example.com", None),
    ],
)
def test_common_name_is_an_approved_san_or_absent(kit, domains, configured, expected):
    kit.create_app("cn", domains=domains, certificate={"subject": configured})
    platform = kit.platform("cn")
    kit.register_build("cn", platform)
    response = kit.attest(Workload.make(platform), "cn")
    assert response.status_code == 200, response.text
    certificate = x509.load_pem_x509_certificate(response.json()["certificate"].encode())
    names = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    assert names == ([] if expected is None else [expected])


def test_rsa_key_type_is_honoured(kit):
    kit.create_app("rsa-app", certificate={"key_type": "rsa-2048"})
    platform = kit.platform("rsa-app")
    kit.register_build("rsa-app", platform)
    before = kit.certificate_count()
    response = kit.attest(Workload.make(platform), "rsa-app")
    _refused(kit, response, "attest.key_type_mismatch", before)
    response = kit.attest(Workload.make(platform, key_type="rsa-2048"), "rsa-app")
    assert response.status_code == 200, response.text
    result = AttestResponse.model_validate_json(response.text)
    assert result.sealed_secrets[0].box.suite == "rsa-oaep-sha256-aes256gcm"


# --- Refusals ------------------------------------------------------------------------------------


def test_pending_build_is_not_allowlisted(kit):
    kit.create_app("bank")
    platform = kit.platform("bank")
    kit.register_build("bank", platform, approve=False)
    before = kit.certificate_count()
    _refused(
        kit, kit.attest(Workload.make(platform), "bank"), "attest.build_not_allowlisted", before
    )


def test_simulated_evidence_never_matches_a_hardware_build(kit):
    kit.create_app("bank")
    platform = kit.platform("bank")
    kit.register_build("bank", platform, simulated=False)
    before = kit.certificate_count()
    response = kit.attest(Workload.make(platform), "bank")
    _refused(kit, response, "attest.build_not_allowlisted", before)


def test_another_apps_build_is_refused(kit, bank):
    platform, _ = bank
    kit.create_app("shop", domains=())
    before = kit.certificate_count()
    _refused(
        kit, kit.attest(Workload.make(platform), "shop"), "attest.build_not_allowlisted", before
    )


def test_tcb_status_rejected(kit):
    kit.create_app("bank")
    platform = kit.platform("bank", tcb=TcbDial.OUT_OF_DATE)
    kit.register_build("bank", platform)
    before = kit.certificate_count()
    body = _refused(
        kit, kit.attest(Workload.make(platform), "bank"), "attest.tcb_status_rejected", before
    )
    assert "attest.tcb_status_rejected" in body["details"]["failed"]


def test_debug_not_allowed(kit):
    kit.create_app("bank")
    platform = kit.platform("bank", debug=True)
    kit.register_build("bank", platform, debug=True)
    before = kit.certificate_count()
    _refused(kit, kit.attest(Workload.make(platform), "bank"), "attest.debug_not_allowed", before)


def test_simulated_not_allowed_by_the_app_policy(kit):
    kit.create_app("strict", policy={})
    platform = kit.platform("strict")
    kit.register_build("strict", platform)
    before = kit.certificate_count()
    _refused(
        kit, kit.attest(Workload.make(platform), "strict"), "attest.simulated_not_allowed", before
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"simulation_enabled": True, "simulation_accounts": ("someone-else",)},
        {"simulation_enabled": False},
    ],
    ids=["account-not-opted-in", "simulation-disabled"],
)
def test_simulated_not_allowed_by_the_settings(harness_factory, tmp_path, settings):
    pki = simulation_pki(tmp_path)
    kit = Kit(harness_factory(simulation_pki_dir=tmp_path / "simulation", **settings), pki)
    kit.create_app("bank")
    platform = kit.platform("bank")
    kit.register_build("bank", platform)
    _refused(kit, kit.attest(Workload.make(platform), "bank"), "attest.simulated_not_allowed", 0)


def test_domain_not_approved(kit, bank):
    platform, _ = bank
    before = kit.certificate_count()
    workload = Workload.make(platform, sans=("evil.example",))
    _refused(kit, kit.attest(workload, "bank"), "attest.domain_not_approved", before)


def test_pending_domain_is_not_approved(kit):
    kit.create_app("bank", approve_domains=False)
    platform = kit.platform("bank")
    kit.register_build("bank", platform)
    workload = Workload.make(platform, sans=("bank.demo.local",))
    _refused(kit, kit.attest(workload, "bank"), "attest.domain_not_approved", 0)


def test_nonce_unknown_expired_and_replayed(kit, bank):
    platform, _ = bank
    workload = Workload.make(platform)
    before = kit.certificate_count()
    body = _refused(
        kit,
        kit.client.post("/v1/attest", json=workload.request("bank", os.urandom(32))),
        "attest.nonce_invalid",
        before,
    )
    assert body["details"]["reason"] == "unknown"

    nonce = kit.challenge()
    kit.harness.clock.advance(dt.timedelta(seconds=121))
    body = _refused(
        kit,
        kit.client.post("/v1/attest", json=workload.request("bank", nonce)),
        "attest.nonce_invalid",
        before,
    )
    assert body["details"]["reason"] == "expired"

    kit.harness.clock.advance(dt.timedelta(seconds=-121))
    nonce = kit.challenge()
    request = workload.request("bank", nonce)
    assert kit.client.post("/v1/attest", json=request).status_code == 200
    body = _refused(
        kit, kit.client.post("/v1/attest", json=request), "attest.nonce_invalid", before + 1
    )
    assert body["details"]["reason"] == "replayed"


def test_refused_attempt_still_uses_the_nonce(kit, bank):
    platform, _ = bank
    nonce = kit.challenge()
    wrong = Workload.make(platform, sans=("evil.example",))
    assert kit.client.post("/v1/attest", json=wrong.request("bank", nonce)).status_code == 422
    right = Workload.make(platform)
    body = _refused(
        kit,
        kit.client.post("/v1/attest", json=right.request("bank", nonce)),
        "attest.nonce_invalid",
        0,
    )
    assert body["details"]["reason"] == "replayed"


def test_swapped_csr_is_a_binding_mismatch(kit, bank):
    platform, _ = bank
    workload = Workload.make(platform)
    other = Workload.make(platform)
    nonce = kit.challenge()
    request = workload.request("bank", nonce)
    request["csr"] = other.csr
    _refused(kit, kit.client.post("/v1/attest", json=request), "attest.binding_mismatch", 0)


def test_replayed_quote_is_refused(kit, bank):
    platform, _ = bank
    workload = Workload.make(platform)
    first = workload.request("bank", kit.challenge())
    assert kit.client.post("/v1/attest", json=first).status_code == 200
    replay = dict(first)
    replay["nonce"] = base64.b64encode(kit.challenge()).decode()
    _refused(kit, kit.client.post("/v1/attest", json=replay), "attest.binding_mismatch", 1)


def test_revoked_build_cannot_attest_and_loses_its_certificates(kit, bank):
    platform, build = bank
    response = kit.attest(Workload.make(platform), "bank")
    assert response.status_code == 200
    serial = format(
        x509.load_pem_x509_certificate(response.json()["certificate"].encode()).serial_number, "x"
    )
    revoked = kit.client.post(
        kit.harness.url(f"/builds/{build['id']}/revoke"), headers=kit.harness.headers()
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["certificates_revoked"] == 1
    shown = kit.client.get(
        kit.harness.url(f"/certificates/{serial}"), headers=kit.harness.headers()
    ).json()
    assert shown["status"] == "revoked"
    crl = x509.load_der_x509_crl(kit.client.get(kit.harness.url("/ca/crl")).content)
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    _refused(kit, kit.attest(Workload.make(platform), "bank"), "attest.build_revoked", 1)


def test_editor_cannot_revoke_a_build(kit, bank):
    _, build = bank
    response = kit.client.post(
        kit.harness.url(f"/builds/{build['id']}/revoke"),
        headers=kit.harness.headers(kit.editor_token),
    )
    assert response.status_code == 403


def test_unknown_app(kit):
    response = kit.client.post(
        "/v1/attest",
        json=Workload.make(kit.platform("x")).request("nope", kit.challenge()),
    )
    assert response.status_code == 404
    assert response.json()["code"] == "attest.app_unknown"


def test_rate_limit(harness_factory, tmp_path):
    pki = simulation_pki(tmp_path)
    kit = Kit(
        harness_factory(
            attest_rate_burst=2, attest_rate_per_second=1.0, **simulation_settings(tmp_path)
        ),
        pki,
    )
    assert kit.client.post("/v1/attest/challenge").status_code == 200
    assert kit.client.post("/v1/attest/challenge").status_code == 200
    limited = kit.client.post("/v1/attest/challenge")
    assert limited.status_code == 429
    assert limited.json()["code"] == "attest.rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    kit.harness.clock.advance(dt.timedelta(seconds=1))
    assert kit.client.post("/v1/attest/challenge").status_code == 200


def test_nonce_is_shared_and_single_use_across_replicas(kit, tmp_path, database_url):
    kit.create_app("bank")
    platform = kit.platform("bank")
    kit.register_build("bank", platform)
    other = build_harness(make_settings(tmp_path, database_url, **simulation_settings(tmp_path)))
    try:
        # A challenge from one replica is accepted by the other...
        workload = Workload.make(platform)
        request = workload.request("bank", kit.challenge())
        assert other.client.post("/v1/attest", json=request).status_code == 200
        # ...and only once, whichever replica sees it again.
        assert kit.client.post("/v1/attest", json=request).json()["details"]["reason"] == (
            "replayed"
        )
        # Two replicas racing with one nonce: exactly one wins.
        request = Workload.make(platform).request("bank", kit.challenge())
        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(
                pool.map(
                    lambda client: client.post("/v1/attest", json=request).status_code,
                    [kit.client, other.client],
                )
            )
        assert statuses == [200, 422]
    finally:
        other.client.close()
        other.runtime.db.dispose()


def test_supplied_collateral_conversion_is_cached_by_content(kit):
    from sanctum.errors import EvidenceError  # noqa: PLC0415
    from sanctum.manager.services.attestation import wire_collateral  # noqa: PLC0415

    att = kit.harness.app.state.attestation
    platform = kit.platform("cache")
    wire = wire_collateral(platform.collateral(now=START))
    first = att.verifier_collateral(wire)
    # Not cached before a quote verified with it: unauthenticated callers cannot fill it.
    assert att.verifier_collateral(wire.model_copy()) is not first
    assert att.collaterals == {}
    att.remember_collateral(wire, first)
    again = att.verifier_collateral(wire.model_copy())
    assert again is first
    assert all(len(key) == 32 for key in att.collaterals)  # SHA-256 keys, not content.
    other = wire_collateral(platform.collateral(now=START + dt.timedelta(days=1)))
    assert other != wire
    converted = att.verifier_collateral(other)
    assert converted is not first
    assert converted.digest != first.digest
    bad = wire.model_copy(update={"tcb_info_signature": b"short"})
    for _ in range(2):  # A malformed collateral is refused every time, never remembered.
        with pytest.raises(EvidenceError) as caught:
            att.verifier_collateral(bad)
        assert caught.value.code == "collateral.malformed"


def test_unknown_anchor_chains_are_not_cached(kit):
    att = kit.harness.app.state.attestation
    for index in range(5):
        assert att.anchor_kind(f"attacker chain {index}") == "unknown"
    assert all(kind in {"intel", "simulated"} for kind in att.anchor_kinds.values())
    assert all(len(key) == 64 for key in att.anchor_kinds)


def test_stale_supplied_collateral_is_refused(kit):
    # The simulated platform's collateral has tcbEvaluationDataNumber 1.
    kit.create_app(
        "bank", policy={"unsafe_allow_simulated": True, "min_tcb_evaluation_data_number": 2}
    )
    platform = kit.platform("bank")
    kit.register_build("bank", platform)
    before = kit.certificate_count()
    _refused(kit, kit.attest(Workload.make(platform), "bank"), "attest.collateral_stale", before)


def test_configured_source_overrides_supplied_collateral(kit, bank):
    platform, _ = bank
    att = kit.harness.app.state.attestation

    class Source:
        calls = 0

        def for_quote(self, _quote, *, now):
            Source.calls += 1
            return platform.collateral(now=now)

    att.collateral_source = Source()
    try:
        workload = Workload.make(platform, sans=("bank.demo.local",))
        request = workload.request("bank", kit.challenge())
        # Collateral that does not chain to a known root: the manager's source is used instead.
        request["collateral"]["tcb_info_issuer_chain"] = "not a certificate chain"
        response = kit.client.post("/v1/attest", json=request)
        assert response.status_code == 200, response.text
        assert Source.calls == 1
    finally:
        att.collateral_source = None
