"""Conversions through the manager API: jobs, builds, tasks, restarts and credentials.

A busybox image (built by hand by ``tests/converter/converter_images.py``) is pushed with skopeo
into Debian's docker-registry on 127.0.0.1 and converted through the API; the job worker is
driven with ``run_once`` (one job per call), except where the app's lifespan runs it.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "converter"))

from converter_images import (
    BUSYBOX,
    RegistryServer,
    _start_registry,
    build_image,
    busybox_entries,
    free_port,
)

from sanctum.manager.models import AuditEntry, Role
from sanctum.manager.models_attestation import Build
from sanctum.manager.models_jobs import AccountSigningKey, Job, JobStatus

PASSWORD = "s3cret-pw-for-conversion"


# --------------------------------------------------------------------------- fixtures


def _registry_tools(require_tool: Callable[..., str]) -> str:
    require_tool("/usr/bin/docker-registry", package="docker-registry")
    require_tool(str(BUSYBOX), package="busybox-static")
    return require_tool("skopeo")


@pytest.fixture(scope="module")
def _registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Start registries lazily (once per module): ``get("plain")`` / ``get("basic")``."""
    running: dict[str, RegistryServer] = {}
    stack: list[Iterator[str]] = []

    def get(kind: str) -> RegistryServer:
        if kind in running:
            return running[kind]
        root = tmp_path_factory.mktemp(f"conv-{kind}")
        auth = None
        if kind == "basic":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt  # noqa: PLC0415 (deprecated; only glibc's bcrypt is needed)

                hashed = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
            (root / "htpasswd").write_text(f"alice:{hashed}\n")
            auth = {"htpasswd": {"realm": "sanctum-test", "path": str(root / "htpasswd")}}
        generator = _start_registry(root, auth)
        host = next(generator)
        stack.append(generator)
        running[kind] = (
            RegistryServer(host, "alice", PASSWORD) if kind == "basic" else RegistryServer(host)
        )
        return running[kind]

    yield {"get": get}
    for generator in stack:
        generator.close()


@pytest.fixture
def push(require_tool, tmp_path, _registries) -> Callable[[str, str], tuple[RegistryServer, str]]:
    """Push a busybox image to a registry kind; return the registry and the image name."""
    skopeo = _registry_tools(require_tool)
    image = build_image(tmp_path / "busybox", [busybox_entries()])

    def run(kind: str, repository: str) -> tuple[RegistryServer, str]:
        server: RegistryServer = _registries["get"](kind)
        command = [skopeo, "--insecure-policy", "copy", "--dest-tls-verify=false"]
        if server.username:
            command += ["--dest-creds", f"{server.username}:{server.password}"]
        command += [image.ref, f"docker://{server.host}/{repository}:1"]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        return server, f"{server.host}/{repository}:1"

    return run


def _app(harness, name: str = "shop") -> dict[str, Any]:
    created = harness.client.post(
        harness.url("/apps"), json={"name": name}, headers=harness.headers()
    )
    assert created.status_code == 201, created.text
    return created.json()


def _convert(harness, app: str, body: dict[str, Any], **kwargs: Any):
    return harness.client.post(
        harness.url(f"/apps/{app}/convert"), json=body, headers=harness.headers(), **kwargs
    )


def _job(harness, job_id: str) -> dict[str, Any]:
    shown = harness.client.get(harness.url(f"/jobs/{job_id}"), headers=harness.headers())
    assert shown.status_code == 200, shown.text
    return shown.json()


def _dump_database(harness) -> str:
    """Return every row of every table as text (to look for secrets in clear)."""
    chunks: list[str] = []
    engine = harness.runtime.db.engine
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        chunks.append(bytes(value).decode("latin-1"))
                    else:
                        chunks.append(str(value))
    return "\n".join(chunks)


# --------------------------------------------------------------------------- tests


@pytest.mark.registry
def test_conversion_registers_a_pending_build_and_keeps_credentials_secret(harness, push, caplog):
    caplog.set_level(logging.DEBUG)
    registry, image = push("basic", "src/shop")
    app = _app(harness)
    body = {
        "inputImageName": image,
        "outputImageName": f"{registry.host}/shielded/shop:1",
        "authConfig": {"username": "alice", "password": PASSWORD},
        "isvprodid": 7,
        "isvsvn": 2,
        "memSize": "256M",
        "threads": 4,
        "rwDirs": ["/tmp"],
        "manifestEnv": ["MODE=prod"],
    }
    accepted = _convert(harness, app["id"], body)
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert job["status"] == "queued"
    assert accepted.headers["location"].endswith(f"/jobs/{job['id']}")
    assert PASSWORD not in accepted.text

    assert harness.app.state.job_worker.run_once() == job["id"]
    done = _job(harness, job["id"])
    assert done["status"] == "succeeded", done["error"]
    result = done["result"]
    # Data Shield's response fields, plus Sanctum's.
    for field in ("newImage", "imageSHA", "imageSize", "isvprodid", "isvsvn", "mrenclave"):
        assert field in result
    assert result["mrsigner"]
    assert result["imageDigest"] == result["imageSHA"]
    assert (result["isvprodid"], result["isvsvn"]) == (7, 2)
    assert result["target"] == "simulated"
    assert "launcher-exec-shim" in result["flags"]
    assert "default-signing-key" not in result["flags"]
    # A dev manager on plain HTTP knows no CA to pin: said plainly in the flags.
    assert result["managerCaPin"] is None
    assert "manager-ca-pin-missing" in result["flags"]
    assert done["progress"]["step"] == "done"
    assert done["attempts"] == 1

    build = harness.client.get(
        harness.url(f"/builds/{done['build_id']}"), headers=harness.headers()
    ).json()
    assert build["status"] == "pending"
    assert build["measurement"] == result["mrenclave"]
    assert build["signer"] == result["mrsigner"]
    assert build["image_digest"] == result["imageDigest"]
    assert build["simulated"] is True
    task = harness.client.get(
        harness.url(f"/tasks/{done['task_id']}"), headers=harness.headers()
    ).json()
    assert task["type"] == "build_allowlist"
    assert task["status"] == "pending"
    with harness.runtime.db.transaction() as session:
        key = session.get(AccountSigningKey, harness.account_id)
        assert key is not None
        assert key.mrsigner == result["mrsigner"]
        row = session.get(Job, job["id"])
        assert row is not None
        assert row.secrets_sealed is None
        converted = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "build.converted")
        ).all()
        assert [e.target_id for e in converted] == [done["build_id"]]
        audit_text = repr([e.details for e in session.scalars(select(AuditEntry)).all()])
    assert PASSWORD not in audit_text
    assert PASSWORD not in _dump_database(harness)
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(done)


@pytest.mark.registry
def test_saved_credentials_are_sealed_reused_and_deletable(harness, push):
    registry, image = push("basic", "src/saved")
    app = _app(harness, "saved")
    first = _convert(
        harness,
        app["name"],
        {
            "inputImageName": image,
            "outputImageName": f"{registry.host}/shielded/saved:1",
            "authConfig": {"username": "alice", "password": PASSWORD},
            "saveCredentials": True,
            "debug": True,
            "signingKey": "default",
        },
    )
    assert first.status_code == 202, first.text
    harness.app.state.job_worker.run_once()
    done = _job(harness, first.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    assert "default-signing-key" in done["result"]["flags"]
    assert done["result"]["debug"] is True
    # No credentials in the second request: the saved ones are used.
    second = _convert(
        harness,
        app["name"],
        {
            "inputImageName": image,
            "outputImageName": f"{registry.host}/shielded/saved:2",
            "memSize": "1G",
        },
    )
    harness.app.state.job_worker.run_once()
    again = _job(harness, second.json()["id"])
    assert again["status"] == "succeeded", again["error"]
    assert again["build_id"] != done["build_id"]
    listed = harness.client.get(
        harness.url("/registry-credentials"), headers=harness.headers()
    ).json()
    assert [(c["host"], c["username"]) for c in listed] == [(registry.host, "alice")]
    assert PASSWORD not in repr(listed)
    assert PASSWORD not in _dump_database(harness)
    deleted = harness.client.delete(
        harness.url(f"/registry-credentials/{registry.host}"), headers=harness.headers()
    )
    assert deleted.status_code == 204
    # Without credentials the registry refuses: the job fails with the registry's code.
    third = _convert(
        harness,
        app["name"],
        {"inputImageName": image, "outputImageName": f"{registry.host}/shielded/saved:3"},
    )
    harness.app.state.job_worker.run_once()
    refused = _job(harness, third.json()["id"])
    assert refused["status"] == "failed"
    assert refused["error"]["code"].startswith("registry.")
    assert refused["build_id"] is None


@pytest.mark.registry
def test_interrupted_job_is_rerun_by_a_restarted_manager(harness_factory, push):
    registry, image = push("plain", "src/restart")
    first = harness_factory()
    app = _app(first, "restart")
    accepted = _convert(
        first,
        app["id"],
        {
            "inputImageName": image,
            "outputImageName": f"{registry.host}/shielded/restart:1",
            "debug": True,
            "signingKey": "default",
        },
    )
    job_id = accepted.json()["id"]
    # The manager died mid-job: the job is left running under a lease that has expired.
    with first.runtime.db.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                status=JobStatus.running,
                lease_owner="dead-replica",
                lease_expires_at=first.clock.now() - dt.timedelta(seconds=1),
                attempts=1,
            )
        )
    second = harness_factory()  # A new manager process on the same database.
    assert second.app.state.job_worker.run_once() == job_id
    done = _job(second, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    with second.runtime.db.transaction() as session:
        builds = session.scalars(select(Build)).all()
    assert [b.id for b in builds] == [done["build_id"]]


def _queue_unreachable(harness, app_id: str) -> str:
    port = free_port()  # Nothing listens there.
    accepted = _convert(
        harness,
        app_id,
        {
            "inputImageName": f"127.0.0.1:{port}/nothing/here:1",
            "outputImageName": f"127.0.0.1:{port}/nothing/out:1",
        },
    )
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["id"])


def test_unreachable_registry_fails_the_job_with_a_code_and_no_build(harness):
    app = _app(harness, "unreachable")
    job_id = _queue_unreachable(harness, app["id"])
    assert harness.app.state.job_worker.run_once() == job_id
    failed = _job(harness, job_id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"].startswith("registry.")
    assert failed["error"]["message"]
    assert failed["result"] is None
    assert failed["build_id"] is None
    assert harness.app.state.job_worker.run_once() is None  # Nothing left to do.
    with harness.runtime.db.transaction() as session:
        assert session.scalars(select(Build)).all() == []


def test_job_interrupted_too_often_fails_cleanly(harness):
    app = _app(harness, "flaky")
    job_id = _queue_unreachable(harness, app["id"])
    attempts = harness.runtime.settings.job_max_attempts
    with harness.runtime.db.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                status=JobStatus.running,
                lease_owner="dead-replica",
                lease_expires_at=harness.clock.now() - dt.timedelta(seconds=1),
                attempts=attempts,
            )
        )
    assert harness.app.state.job_worker.run_once() is None
    failed = _job(harness, job_id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "job.attempts_exhausted"


def test_a_live_lease_is_not_taken_over(harness):
    app = _app(harness, "busy")
    job_id = _queue_unreachable(harness, app["id"])
    with harness.runtime.db.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                status=JobStatus.running,
                lease_owner="live-replica",
                lease_expires_at=harness.clock.now() + dt.timedelta(seconds=60),
                attempts=1,
            )
        )
    assert harness.app.state.job_worker.run_once() is None
    assert _job(harness, job_id)["status"] == "running"


def test_lifespan_worker_runs_queued_jobs(harness_factory):
    harness = harness_factory(job_poll_seconds=0.05)
    app = _app(harness, "background")
    job_id = _queue_unreachable(harness, app["id"])
    finished = threading.Event()
    with TestClient(harness.app) as client:  # Runs the lifespan: the worker thread starts.
        for _ in range(600):
            shown = client.get(harness.url(f"/jobs/{job_id}"), headers=harness.headers()).json()
            if shown["status"] == "failed":
                finished.set()
                break
            finished.wait(0.05)
    assert finished.is_set(), shown
    assert shown["error"]["code"].startswith("registry.")


def test_data_shield_endpoint_and_request_checks(harness):
    app = _app(harness, "ds")
    url = harness.url("/tools/converter/convert-app")
    body = {"inputImageName": "127.0.0.1:5000/a:1", "outputImageName": "127.0.0.1:5000/b:1"}
    accepted = harness.client.post(url, json=body | {"app": "ds"}, headers=harness.headers())
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert job["kind"] == "conversion"
    assert job["app_id"] == app["id"]
    listed = harness.client.get(harness.url("/jobs"), headers=harness.headers()).json()
    assert [j["id"] for j in listed] == [job["id"]]
    missing = harness.client.post(url, json=body, headers=harness.headers())
    assert missing.json()["code"] == "conversion.app_missing"
    unknown = harness.client.post(
        url, json=body | {"app": "ds", "bogus": 1}, headers=harness.headers()
    )
    assert unknown.status_code == 422
    local = harness.client.post(
        url,
        json={"app": "ds", "inputImageName": "oci:/etc:x", "outputImageName": "r.example/b:1"},
        headers=harness.headers(),
    )
    assert local.json()["code"] == "conversion.reference_not_registry"
    debug_key = harness.client.post(
        url, json=body | {"app": "ds", "signingKey": "default"}, headers=harness.headers()
    )
    assert debug_key.json()["code"] == "signing_key.debug_key_requires_debug"
    bad_size = harness.client.post(
        url, json=body | {"app": "ds", "memSize": "3G"}, headers=harness.headers()
    )
    assert bad_size.json()["code"] == "build.size_invalid"
    bad_env = harness.client.post(
        url, json=body | {"app": "ds", "manifestEnv": ["NOEQUALS"]}, headers=harness.headers()
    )
    assert bad_env.json()["code"] == "conversion.request_invalid"
    no_app = harness.client.post(url, json=body | {"app": "nope"}, headers=harness.headers())
    assert no_app.status_code == 404
    unknown_job = harness.client.get(
        harness.url("/jobs/00000000-0000-0000-0000-000000000000"), headers=harness.headers()
    )
    assert unknown_job.json()["code"] == "job.not_found"


def test_data_shield_path_without_account(harness):
    _app(harness, "dsk")
    url = "/v1/tools/converter/convert-app"
    body = {
        "app": "dsk",
        "inputImageName": "127.0.0.1:5000/a:1",
        "outputImageName": "[::1]:5000/b:1",
    }
    # A user names the account; an API key acts in its own.
    missing = harness.client.post(url, json=body, headers=harness.headers())
    assert missing.json()["code"] == "conversion.account_missing"
    named = harness.client.post(
        url, json=body, params={"account": harness.account_id}, headers=harness.headers()
    )
    assert named.status_code == 202, named.text
    key = harness.client.post(
        harness.url("/apikeys"), json={"name": "ci", "role": "editor"}, headers=harness.headers()
    ).json()["secret"]
    key_token = harness.client.post("/v1/auth/token", json={"api_key": key}).json()["access_token"]
    by_key = harness.client.post(url, json=body, headers=harness.headers(key_token))
    assert by_key.status_code == 202, by_key.text
    assert by_key.json()["account_id"] == harness.account_id
    _, viewer = harness.add_user(Role.viewer)
    refused = harness.client.post(
        url, json=body, params={"account": harness.account_id}, headers=harness.headers(viewer)
    )
    assert refused.status_code == 403
    assert harness.client.post(url, json=body).status_code == 401
