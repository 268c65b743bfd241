"""Workload reports (rollback floor, finished rotation) and manager-driven key rotation."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from attest_helpers import Kit, Workload, simulation_pki, simulation_settings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sanctum.protocol.dir_reports import DirReport, SignedDirReport, sign_dir_report
from sanctum.protocol.errors import SealingError
from sanctum.protocol.messages import AttestResponse, DirectoryKey, SealedDirKey

REPORT = "/v1/workloads/encrypted-dirs/report"
NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    kit = Kit(harness_factory(**simulation_settings(tmp_path)), simulation_pki(tmp_path))
    kit.create_app("bank", encrypted_dirs=["/data", "/var/lib/db"])
    kit.register_build("bank", kit.platform("v1"))
    return kit


def _attest(
    kit: Kit, label: str = "v1"
) -> tuple[AttestResponse, Workload, dict[str, DirectoryKey]]:
    workload = Workload.make(kit.platform(label), sans=("bank.demo.local",))
    nonce = kit.challenge()
    response = kit.client.post("/v1/attest", json=workload.request("bank", nonce))
    assert response.status_code == 200, response.text
    answer = AttestResponse.model_validate_json(response.content)
    keys = answer.open_dir_keys(workload.key, expected_nonce=nonce, expected_app="bank")
    return answer, workload, keys


def _signed(
    answer: AttestResponse,
    workload: Workload,
    *,
    epoch: int,
    event: str = "mounted",
    path: str = "/data",
    version: int = 1,
) -> SignedDirReport:
    report = DirReport.model_validate(
        {"event": event, "path": path, "version": version, "epoch": epoch, "issued_at": NOW}
    )
    return sign_dir_report(workload.key, answer.certificate, report)


def _post(kit: Kit, signed: SignedDirReport) -> Any:
    return kit.client.post(REPORT, json=signed.model_dump(mode="json"))


def _dir(kit: Kit, answer: AttestResponse, path: str = "/data") -> SealedDirKey:
    return next(key for key in answer.sealed_dir_keys if key.path == path)


def test_reported_epoch_becomes_the_floor_and_never_goes_down(kit):
    answer, workload, keys = _attest(kit)
    assert keys["/data"].min_epoch == 0
    assert _dir(kit, answer).min_epoch is None
    accepted = _post(kit, _signed(answer, workload, epoch=7))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"path": "/data", "version": 1, "min_epoch": 7, "retired": []}
    # A lower (older or replayed) report leaves the floor where it is.
    lower = _post(kit, _signed(answer, workload, epoch=3))
    assert lower.json()["min_epoch"] == 7
    again, _, keys = _attest(kit)
    assert keys["/data"].min_epoch == 7
    assert keys["/var/lib/db"].min_epoch == 0  # Floors are per directory.
    assert _dir(kit, again).min_epoch == 7
    audits = kit.audit_actions("app.encrypted_dir_epoch_reported")
    assert [entry.details["floor"] for entry in audits] == [7, 7]
    assert audits[0].actor_type == "workload"


def test_a_report_signed_by_another_key_is_refused(kit):
    answer, workload, _ = _attest(kit)
    forged = sign_dir_report(
        ec.generate_private_key(ec.SECP256R1()),
        answer.certificate,
        _signed(answer, workload, epoch=9).report(),
    )
    refused = _post(kit, forged)
    assert refused.status_code in {400, 401, 403, 422}, refused.text
    assert refused.json()["code"] == "dir_report.signature_invalid"
    _, _, keys = _attest(kit)
    assert keys["/data"].min_epoch == 0


def test_a_tampered_payload_is_refused(kit):
    answer, workload, _ = _attest(kit)
    signed = _signed(answer, workload, epoch=5)
    tampered = signed.model_copy(
        update={"payload": signed.payload.replace(b'"epoch":5', b'"epoch":9')}
    )
    refused = _post(kit, tampered)
    assert refused.json()["code"] == "dir_report.signature_invalid"


def _self_signed(key: ec.EllipticCurvePrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank.demo.local")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def test_a_certificate_the_manager_did_not_issue_is_refused(kit):
    answer, workload, _ = _attest(kit)
    assert isinstance(workload.key, ec.EllipticCurvePrivateKey)
    report = _signed(answer, workload, epoch=5).report()
    refused = _post(kit, sign_dir_report(workload.key, _self_signed(workload.key), report))
    assert refused.json()["code"] == "dir_report.certificate_unknown"
    garbage = SignedDirReport(certificate="-" * 80, payload=b"{}", signature=b"x" * 64)
    assert _post(kit, garbage).json()["code"] == "dir_report.certificate_invalid"


def test_a_revoked_certificate_cannot_report(kit):
    answer, workload, _ = _attest(kit)
    serial = format(x509.load_pem_x509_certificate(answer.certificate.encode()).serial_number, "x")
    revoked = kit.client.post(
        kit.harness.url(f"/certificates/{serial}/revoke"), headers=kit.harness.headers()
    )
    assert revoked.status_code == 200, revoked.text
    refused = _post(kit, _signed(answer, workload, epoch=5))
    assert refused.json()["code"] == "dir_report.certificate_revoked"


def test_a_report_about_a_directory_the_app_does_not_have_is_refused(kit):
    answer, workload, _ = _attest(kit)
    refused = _post(kit, _signed(answer, workload, epoch=5, path="/etc"))
    assert refused.status_code == 404
    assert refused.json()["code"] == "encrypted_dir.not_found"
    unknown_version = _post(kit, _signed(answer, workload, epoch=5, version=4))
    assert unknown_version.json()["code"] == "encrypted_dir.key_not_found"


def test_the_report_route_needs_no_user_credentials_but_a_valid_body(kit):
    response = kit.client.post(REPORT, json={"certificate": "x"})
    assert response.status_code == 422


def _build_id(kit: Kit) -> str:
    builds = kit.client.get(kit.harness.url("/builds"), headers=kit.harness.headers()).json()
    items = builds["items"] if isinstance(builds, dict) else builds
    return str(items[0]["id"])


def _rotate(kit: Kit, token: str | None = None, *, build: str | None = None) -> Any:
    query = "" if build is None else f"?build={build}"
    return kit.client.post(
        kit.harness.url(f"/apps/bank/encrypted-dirs/data/rotate{query}"),
        headers=kit.harness.headers(token),
    )


def test_rotation_releases_new_and_old_keys_until_the_workload_reports_it_done(kit):
    _, _, before = _attest(kit)
    build = _build_id(kit)
    assert _rotate(kit).json()["code"] == "encrypted_dir.build_invalid"  # same_build: name it.
    assert _rotate(kit, kit.editor_token, build=build).status_code == 403
    rotated = _rotate(kit, build=build)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["version"] == 2

    answer, workload, keys = _attest(kit)
    data = keys["/data"]
    assert data.version == 2
    assert data.key != before["/data"].key
    assert [(p.version, p.key) for p in data.previous] == [(1, before["/data"].key)]
    assert keys["/var/lib/db"].previous == ()  # Only the rotated directory.

    # An "older" key that is not older is refused on opening.
    sealed = _dir(kit, answer)
    bogus = sealed.model_copy(
        update={"previous": [sealed.previous[0].model_copy(update={"version": 2})]}
    )
    with pytest.raises(SealingError) as invalid:
        answer.model_copy(update={"sealed_dir_keys": [bogus]}).open_dir_keys(
            workload.key, expected_nonce=answer.sealing.nonce, expected_app="bank"
        )
    assert invalid.value.code == "sealing.dir_version_invalid"

    # Reporting a rotation to an older version than the newest is refused.
    stale = _post(kit, _signed(answer, workload, epoch=3, event="rotated", version=1))
    assert stale.status_code == 409
    assert stale.json()["code"] == "encrypted_dir.key_stale"
    done = _post(kit, _signed(answer, workload, epoch=3, event="rotated", version=2))
    assert done.status_code == 200, done.text
    assert done.json()["retired"] == [1]
    retired = _post(kit, _signed(answer, workload, epoch=4, version=1))
    assert retired.json()["code"] == "encrypted_dir.key_retired"

    _, _, after = _attest(kit)
    assert after["/data"].version == 2
    assert after["/data"].previous == ()
    assert after["/data"].min_epoch == 3
    assert len(kit.audit_actions("app.encrypted_dir_key_rotated")) == 1
    assert len(kit.audit_actions("app.encrypted_dir_key_retired")) == 1
    listing = kit.client.get(
        kit.harness.url("/apps/bank/encrypted-dirs"), headers=kit.harness.headers()
    ).json()
    versions = {(k["path"], k["version"]): k for k in listing["keys"]}
    assert versions[("/data", 1)]["retired_at"] is not None
    assert versions[("/data", 2)]["min_epoch"] == 3


def test_forced_retirement_is_administrator_only_and_needs_force(kit):
    _attest(kit)
    build = _build_id(kit)
    assert _rotate(kit, build=build).status_code == 200
    url = kit.harness.url(f"/apps/bank/encrypted-dirs/data/retire?build={build}")
    headers = kit.harness.headers()
    assert kit.client.post(url, json={}, headers=headers).json()["code"] == (
        "encrypted_dir.force_required"
    )
    editor = kit.client.post(
        url, json={"force": True}, headers=kit.harness.headers(kit.editor_token)
    )
    assert editor.status_code == 403
    forced = kit.client.post(url, json={"force": True}, headers=headers)
    assert forced.status_code == 200, forced.text
    assert forced.json() == {"path": "/data", "retired": [1]}
    _, _, keys = _attest(kit)
    assert keys["/data"].previous == ()
    [entry] = kit.audit_actions("app.encrypted_dir_key_retired")
    assert entry.details["reason"] == "forced"


def test_older_wire_without_previous_keys_still_parses():
    sealed = SealedDirKey.model_validate(
        {
            "path": "/data",
            "version": 1,
            "box": {"suite": "hpke-p256-sha256-aes256gcm", "enc": "AAAA", "ciphertext": "AAAA"},
        }
    )
    assert sealed.previous == []


def test_concurrent_reports_leave_the_highest_epoch(kit):
    answer, workload, _ = _attest(kit)
    epochs = [5, 90, 17, 64, 3, 88, 41, 90, 12, 77]
    bodies = [_signed(answer, workload, epoch=epoch) for epoch in epochs]
    with ThreadPoolExecutor(5) as pool:
        statuses = list(pool.map(lambda body: _post(kit, body).status_code, bodies))
    assert statuses == [200] * len(epochs)
    _, _, keys = _attest(kit)
    assert keys["/data"].min_epoch == max(epochs)


def test_a_mounted_report_of_the_newest_version_proves_the_rotation(kit):
    """The ``rotated`` report was dropped: the ``mounted`` one of version 2 retires version 1."""
    _attest(kit)
    build = _build_id(kit)
    assert _rotate(kit, build=build).status_code == 200
    answer, workload, keys = _attest(kit)
    assert [p.version for p in keys["/data"].previous] == [1]
    # A mounted report of the older version does not retire anything.
    older = _post(kit, _signed(answer, workload, epoch=2, version=1))
    assert older.status_code == 200, older.text
    assert older.json()["retired"] == []
    mounted = _post(kit, _signed(answer, workload, epoch=5, version=2))
    assert mounted.status_code == 200, mounted.text
    assert mounted.json()["retired"] == [1]
    _, _, after = _attest(kit)
    assert after["/data"].previous == ()
    assert after["/data"].min_epoch == 5


def _set_policy(kit: Kit, policy: str) -> None:
    response = kit.client.put(
        kit.harness.url("/apps/bank/encrypted-dirs/policy"),
        json={"key_policy": policy},
        headers=kit.harness.headers(),
    )
    assert response.status_code == 200, response.text


def test_a_report_concerns_the_keys_released_with_its_certificate_not_the_current_policy(kit):
    """After a same_build -> app_builds switch, an older workload cannot move the app's floor."""
    old_answer, old_workload, old_keys = _attest(kit)  # same_build: the build's key.
    _set_policy(kit, "app_builds")
    _, _, shared = _attest(kit)  # app_builds: a new, app-wide key.
    assert shared["/data"].key != old_keys["/data"].key
    moved = _post(kit, _signed(old_answer, old_workload, epoch=50, version=1))
    assert moved.status_code == 200, moved.text
    _, _, after = _attest(kit)
    assert after["/data"].min_epoch == 0  # The app-wide key's floor did not move.
    _set_policy(kit, "same_build")
    _, _, build_keys = _attest(kit)
    assert build_keys["/data"].key == old_keys["/data"].key
    assert build_keys["/data"].min_epoch == 50  # The report raised the key it was given.


def test_a_report_about_a_key_never_released_to_the_workload_is_refused(kit):
    _set_policy(kit, "app_builds")
    answer, workload, _keys = _attest(kit)
    _set_policy(kit, "same_build")
    _attest(kit)  # Creates the build's key version 1, released to another workload only.
    build = _build_id(kit)
    assert _rotate(kit, build=build).status_code == 200  # The build's version 2.
    refused = _post(kit, _signed(answer, workload, epoch=3, event="rotated", version=2))
    assert refused.status_code == 404
    assert refused.json()["code"] == "encrypted_dir.key_not_found"


def test_reports_have_their_own_rate_limit_bucket(harness_factory, tmp_path):
    settings = simulation_settings(tmp_path)
    kit = Kit(
        harness_factory(**settings, attest_rate_per_second=0.0001, attest_rate_burst=4),
        simulation_pki(tmp_path),
    )
    kit.create_app("bank", encrypted_dirs=["/data"])
    kit.register_build("bank", kit.platform("v1"))
    answer, workload, _keys = _attest(kit)
    for epoch in range(1, 5):  # A whole burst of reports...
        sent = _post(kit, _signed(answer, workload, epoch=epoch))
        assert sent.status_code == 200, sent.text
    _attest(kit)  # ...leaves the attestations' bucket alone.
    limited = _post(kit, _signed(answer, workload, epoch=9))
    assert limited.status_code == 429  # The reports' own bucket is empty.
