"""The attestation hot path (ADR 0085): caches that never hide a change, the Core writes, the lane.

The per-process caches (parsed policy, unsealed secret values) are keyed by what the database
returns on every request, so a change made by another replica, straight in the database, is
seen by the very next attestation. Revocation and allowlisting are never cached. The Core
writes record the same rows as the ORM did, and the audit chain stays verifiable. The ASGI
lane answers exactly like the FastAPI routes it shortcuts.
"""

from __future__ import annotations

import asyncio
import base64
import logging

import httpx
import pytest
from attest_helpers import Kit, Workload, simulation_pki, simulation_settings
from sqlalchemy import select, update

from sanctum.manager.models_attestation import (
    App,
    AttestNonce,
    Build,
    BuildStatus,
    CertificateRecord,
    WorkloadInstance,
)
from sanctum.manager.services.audit import verify_chain
from sanctum.protocol.messages import AttestResponse


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    pki = simulation_pki(tmp_path)
    return Kit(harness_factory(**simulation_settings(tmp_path)), pki)


@pytest.fixture
def bank(kit):
    kit.create_app("bank")
    platform = kit.platform("bank")
    build = kit.register_build("bank", platform)
    return platform, build


def _open(kit: Kit, workload: Workload, app: str = "bank") -> dict[str, bytes]:
    nonce = kit.challenge()
    response = kit.client.post("/v1/attest", json=workload.request(app, nonce))
    assert response.status_code == 200, response.text
    result = AttestResponse.model_validate_json(response.text)
    return result.open_secrets(workload.key, expected_nonce=nonce, expected_app=app)


def test_policy_changed_in_the_database_counts_at_once(kit, bank):
    platform, _ = bank
    assert kit.attest(Workload.make(platform), "bank").status_code == 200
    # Another replica (here: the database directly) withdraws simulated evidence.
    with kit.harness.runtime.db.transaction() as session:
        app = session.scalars(select(App).where(App.name == "bank")).one()
        app.policy = {**app.policy, "unsafe_allow_simulated": False}
    refused = kit.attest(Workload.make(platform), "bank")
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "attest.simulated_not_allowed"


def test_isv_floor_changed_in_the_database_counts_at_once(kit, bank):
    platform, _ = bank
    assert kit.attest(Workload.make(platform), "bank").status_code == 200
    with kit.harness.runtime.db.transaction() as session:
        session.execute(update(App).where(App.name == "bank").values(min_isvsvn=99))
    refused = kit.attest(Workload.make(platform), "bank")
    assert refused.json()["code"] == "attest.isvsvn_too_low", refused.text


def test_secret_replaced_is_delivered_at_once(kit, bank):
    platform, _ = bank
    assert _open(kit, Workload.make(platform)) == {"DB_PASSWORD": b"hunter2"}
    app_id = kit.client.get(kit.harness.url("/apps/bank"), headers=kit.harness.headers()).json()[
        "id"
    ]
    replaced = kit.client.put(
        kit.harness.url(f"/apps/{app_id}/secrets/DB_PASSWORD"),
        json={"value": "correct horse", "delivery": "env"},
        headers=kit.harness.headers(),
    )
    assert replaced.status_code == 200, replaced.text
    assert _open(kit, Workload.make(platform)) == {"DB_PASSWORD": b"correct horse"}


def test_build_revoked_in_the_database_is_refused_at_once(kit, bank):
    platform, build = bank
    assert kit.attest(Workload.make(platform), "bank").status_code == 200
    with kit.harness.runtime.db.transaction() as session:
        session.execute(
            update(Build).where(Build.id == build["id"]).values(status=BuildStatus.revoked)
        )
    refused = kit.attest(Workload.make(platform), "bank")
    assert refused.json()["code"] == "attest.build_revoked", refused.text


def test_only_the_quotes_measurement_is_read_but_other_builds_do_not_match(kit, bank):
    platform, _ = bank
    other = kit.platform("other")
    kit.register_build("bank", other)  # A second allowlisted build of the same app.
    assert kit.attest(Workload.make(other), "bank").status_code == 200
    assert kit.attest(Workload.make(platform), "bank").status_code == 200
    stranger = kit.platform("stranger")
    refused = kit.attest(Workload.make(stranger), "bank")
    assert refused.json()["code"] == "attest.build_not_allowlisted", refused.text


def test_instance_rows_are_upserted_and_certificates_recorded(kit, bank):
    platform, build = bank
    for _ in range(3):
        response = kit.attest(Workload.make(platform), "bank", instance="pod-7")
        assert response.status_code == 200, response.text
    with kit.harness.runtime.db.transaction() as session:
        rows = session.scalars(select(WorkloadInstance)).all()
        assert [(r.instance, r.attestations, r.build_id) for r in rows] == [
            ("pod-7", 3, build["id"])
        ]
        records = session.scalars(
            select(CertificateRecord).order_by(CertificateRecord.created_at)
        ).all()
        assert len(records) == 3
        assert rows[0].certificate_serial in {r.serial for r in records}
        assert {r.instance for r in records} == {"pod-7"}
        assert all(r.sans == ["bank.demo.local"] and r.build_id == build["id"] for r in records)


def test_audit_chain_verifies_after_accepted_and_refused_attempts(kit, bank):
    platform, _ = bank
    assert kit.attest(Workload.make(platform), "bank").status_code == 200
    assert kit.attest(Workload.make(platform, sans=("evil.example",)), "bank").status_code == 422
    assert kit.attest(Workload.make(platform), "bank").status_code == 200
    runtime = kit.harness.runtime
    with runtime.db.transaction() as session:
        report = verify_chain(session, kit.harness.account_id, runtime.audit_public_keys)
    assert report.intact, report.problem
    assert [e.action for e in kit.audit_actions("attestation.accepted")] == [
        "attestation.accepted"
    ] * 2
    assert len(kit.audit_actions("attestation.refused")) == 1


def test_invalid_bodies_are_answered_like_the_route(kit, bank):
    response = kit.client.post("/v1/attest", json={"app": "bank", "quote": "!!"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "request.invalid"
    assert all(error["loc"][0] == "body" for error in body["errors"])
    assert {tuple(e["loc"]) for e in body["errors"]} >= {("body", "csr"), ("body", "nonce")}
    assert response.headers["x-request-id"]
    broken = kit.client.post(
        "/v1/attest", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["code"] == "request.invalid"
    # A body not declared JSON goes to the FastAPI route, which refuses it the same way.
    other = kit.client.post("/v1/attest", content=b"app=bank")
    assert other.status_code == 422
    assert other.json()["code"] == "request.invalid"


def test_lane_requests_are_measured_under_their_route(kit, bank):
    platform, _ = bank
    assert kit.attest(Workload.make(platform), "bank").status_code == 200
    metrics = kit.client.get("/metrics").text
    for route in ("/v1/attest/challenge", "/v1/attest"):
        line = f'sanctum_http_requests_total{{method="POST",route="{route}",status="200"}} 1.0'
        assert line in metrics, metrics


def test_concurrent_challenges_are_each_stored_once(kit, bank):
    platform, _ = bank

    async def challenges() -> list[bytes]:
        transport = httpx.ASGITransport(app=kit.harness.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = await asyncio.gather(
                *(client.post("/v1/attest/challenge") for _ in range(24))
            )
        assert all(answer.status_code == 200 for answer in answers)
        return [base64.b64decode(answer.json()["nonce"]) for answer in answers]

    nonces = asyncio.run(challenges())
    assert len(set(nonces)) == 24
    with kit.harness.runtime.db.transaction() as session:
        assert len(session.scalars(select(AttestNonce.nonce_hash)).all()) == 24
    workload = Workload.make(platform)
    for nonce in nonces[:3]:
        assert kit.client.post("/v1/attest", json=workload.request("bank", nonce)).status_code == (
            200
        )
    replay = kit.client.post("/v1/attest", json=workload.request("bank", nonces[0]))
    assert replay.json()["details"]["reason"] == "replayed"


def test_metrics_count_every_request_with_cached_label_children(kit, bank):
    platform, _ = bank
    workload = Workload.make(platform)
    nonce = kit.challenge()
    for _ in range(2):
        assert kit.attest(workload, "bank").status_code == 200
    assert kit.client.post("/v1/attest", json=workload.request("bank", nonce)).status_code == 200
    replay = kit.client.post("/v1/attest", json=workload.request("bank", nonce))
    assert replay.json()["code"] == "attest.nonce_invalid"
    metrics = kit.client.get("/metrics").text
    expected = (
        'sanctum_http_requests_total{method="POST",route="/v1/attest",status="200"} 3.0',
        'sanctum_http_requests_total{method="POST",route="/v1/attest/challenge",status="200"} 3.0',
        (
            'sanctum_http_requests_total{method="POST",route="/v1/attest",'
            f'status="{replay.status_code}"}} 1.0'
        ),
        'sanctum_http_request_duration_seconds_count{method="POST",route="/v1/attest"} 4.0',
        'sanctum_attestations_total{code="ok",endpoint="attest",outcome="accepted"} 3.0',
        (
            'sanctum_attestations_total{code="attest.nonce_invalid",endpoint="attest",'
            'outcome="refused"} 1.0'
        ),
        'sanctum_attestation_duration_seconds_count{endpoint="attest"} 3.0',
    )
    for line in expected:
        assert line in metrics, (line, metrics)


@pytest.mark.parametrize(
    "created", [0.0, 999_999_999.9995, 1_000_000_000.0001, 1_764_300_000.5, 1_764_300_001.25]
)
def test_text_log_format_is_the_standard_one(created):
    from sanctum.log import _TextFormatter  # noqa: PLC0415 (the formatter under test)

    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    ours, standard = _TextFormatter(fmt), logging.Formatter(fmt)
    for at in (created, created + 0.5, created + 1.0, created):
        record = logging.LogRecord(
            "sanctum.manager.access", logging.INFO, "x", 1, "%s", ("m",), None
        )
        record.created, record.msecs = at, float(int((at - int(at)) * 1000))
        assert ours.format(record) == standard.format(record)


def test_a_refusal_raised_after_the_writes_issues_nothing(kit, bank, monkeypatch):
    # Every check comes before the writes today; the savepoint keeps it so if a later change
    # raises a refusal after them: only the used nonce and the refusal entry are committed.
    import sanctum.manager.services.attestation as service  # noqa: PLC0415

    real_append = service.append

    def failing_append(ctx, action, **kwargs):
        if action == "attestation.accepted":
            raise service.AttestationRefusedError("late refusal", code="attest.test_late")
        return real_append(ctx, action, **kwargs)

    monkeypatch.setattr(service, "append", failing_append)
    platform, _ = bank
    response = kit.attest(Workload.make(platform), "bank", instance="pod-9")
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "attest.test_late"
    with kit.harness.runtime.db.transaction() as session:
        assert session.scalars(select(CertificateRecord)).all() == []
        assert session.scalars(select(WorkloadInstance)).all() == []
    assert len(kit.audit_actions("attestation.refused")) == 1


def test_challenges_and_attestations_are_never_cached(kit, bank):
    platform, _ = bank
    challenge = kit.client.post("/v1/attest/challenge")
    assert challenge.headers["cache-control"] == "no-store"
    response = kit.attest(Workload.make(platform), "bank")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
