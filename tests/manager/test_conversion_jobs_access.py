"""Conversion jobs: the registry allowlist, the manager's identity in manifests, restarts mid-run.

The allowlist tests drive the job worker with a fake httpx transport that records every request
it is handed: a refusal must come before any connection (the recorded list stays empty), and a
redirect or a token realm off the allowlist must never be requested.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from test_conversion_jobs import PASSWORD, _app, _convert, _job, _registries, push

from sanctum.converter.manifest import ca_pin_from_certificate, parse_manifest
from sanctum.converter.oci import open_source
from sanctum.converter.oci.model import Descriptor
from sanctum.converter.oci.reference import RegistryReference, parse_image_reference
from sanctum.converter.oci.registry import RegistryClient, RegistrySink
from sanctum.errors import ConflictError, UsageError
from sanctum.manager.models_attestation import Build
from sanctum.manager.models_jobs import Job, JobStatus
from sanctum.manager.schemas_jobs import ConversionIn
from sanctum.manager.services.conversion import (
    CONVERSION,
    _with_manager_identity,
    manager_identity,
    run_conversion,
)
from sanctum.manager.services.jobs import JobRun, JobWorker
from sanctum.manager.services.registry_allowlist import (
    AllowlistTransport,
    RegistryAllowlist,
    RegistryNotAllowedError,
    parse_host_pattern,
)
from sanctum.manager.settings import ManagerSettings

__all__ = ["_registries", "push"]  # Fixtures shared with test_conversion_jobs.

REGISTRY = "registry.example.com"
ALLOWED = {"converter_registry_allowlist": (REGISTRY,)}
DEBUG = {"debug": True, "signingKey": "default"}


class RecordingTransport(httpx.BaseTransport):
    """A fake network: records each request's URL and answers with ``handler``."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.calls: list[str] = []
        self.handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(str(request.url))
        return self.handler(request)


def _unexpected(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request was expected, got {request.url}")


def _worker(harness, transport: httpx.BaseTransport) -> JobWorker:
    return JobWorker(
        harness.runtime, {CONVERSION: functools.partial(run_conversion, transport=transport)}
    )


def _queue(harness, app_id: str, **extra: Any) -> str:
    accepted = _convert(
        harness,
        app_id,
        {"inputImageName": f"{REGISTRY}/app:1", "outputImageName": f"{REGISTRY}/out:1"}
        | DEBUG
        | extra,
    )
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["id"])


def _ca_pem(tmp_path: Path, name: str = "ca.pem") -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Public CA")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / name
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


# --------------------------------------------------------------------------- patterns


def test_host_patterns_parse_match_and_normalise() -> None:
    exact = parse_host_pattern("Registry.Example.COM")
    assert (str(exact), exact.matches("registry.example.com", None)) == (REGISTRY, True)
    assert not exact.matches("registry.example.com", 5000)  # Default port only.
    assert not exact.matches("evil-registry.example.com", None)
    port = parse_host_pattern("r.example.com:5000")
    assert port.matches("r.example.com", 5000)
    assert not port.matches("r.example.com", None)
    wildcard = parse_host_pattern("*.example.com:*")
    assert wildcard.matches("a.b.example.com", 1)
    assert wildcard.matches("a.example.com", None)
    assert not wildcard.matches("example.com", None)  # Not the apex.
    assert not wildcard.matches("badexample.com", None)
    ipv6 = parse_host_pattern("[::1]:*")
    assert (str(ipv6), ipv6.matches("::1", 8443)) == ("[::1]:*", True)
    for bad in ("*", "*:*", "::1", "host:0", "host:70000", "host:x", "bad_host", "[::1", "a..b"):
        with pytest.raises(ValueError, match=r"pattern|'\*'"):
            parse_host_pattern(bad)


def test_allowlist_checks_references_and_urls_by_host_and_port() -> None:
    allowlist = RegistryAllowlist.parse(["127.0.0.1:*", "r.example.com"])
    allowlist.check_registry("127.0.0.1:5000", field="inputImageName")
    allowlist.check_registry("R.EXAMPLE.COM", field="inputImageName")
    allowlist.check_url(httpx.URL("https://r.example.com:443/v2/"))  # The default port.
    allowlist.check_url(httpx.URL("http://127.0.0.1:5000/v2/"))
    for registry in ("r.example.com:5000", "10.0.0.1", "localhost:5000", "2130706433"):
        with pytest.raises(RegistryNotAllowedError) as refused:
            allowlist.check_registry(registry, field="outputImageName")
        assert refused.value.code == "conversion.registry_not_allowed"
        assert "outputImageName" in refused.value.message
    with pytest.raises(RegistryNotAllowedError) as refused:
        allowlist.check_url(httpx.URL("http://169.254.169.254/latest/meta-data/?token=s3cret"))
    assert "s3cret" not in refused.value.message  # Only the origin is named.
    assert "meta-data" not in refused.value.message
    with pytest.raises(RegistryNotAllowedError):
        RegistryAllowlist().check_registry("127.0.0.1:5000", field="inputImageName")


GUARDED = RegistryAllowlist.parse([REGISTRY, "127.0.0.1:*", "[::1]:5000"])


@pytest.mark.parametrize(
    ("url", "sent_to"),
    [
        # Allowed hosts, however written: the request goes to that host.
        (f"https://{REGISTRY}./v2/", REGISTRY),  # The absolute (trailing-dot) form.
        ("https://REGISTRY.Example.COM/v2/", REGISTRY),
        (f"https://user:pw@{REGISTRY}/v2/", REGISTRY),  # Userinfo is not the host.
        (f"https://{REGISTRY}#@169.254.169.254/", REGISTRY),  # Neither is a fragment.
        ("http://[::1]:5000/v2/", "::1"),
        # Hosts off the list hidden in userinfo, a trailing dot or another spelling.
        (f"https://{REGISTRY}@169.254.169.254/v2/", None),
        (f"https://{REGISTRY}:443@169.254.169.254/", None),
        (f"https://{REGISTRY}\\@169.254.169.254/", None),
        (f"https://169.254.169.254?@{REGISTRY}/", None),
        ("http://169.254.169.254./latest/meta-data/", None),
        (f"http://{REGISTRY}%2e/", None),
        (f"ftp://{REGISTRY}/", None),
        # IPv6: another port, other spellings of loopback, IPv4-mapped, a zone, a ULA.
        ("http://[::1]:5001/v2/", None),
        ("http://[0:0:0:0:0:0:0:1]:5000/v2/", None),
        ("http://[::ffff:127.0.0.1]:5000/v2/", None),
        ("http://[::ffff:7f00:1]:5000/v2/", None),
        ("http://[::1%25eth0]:5000/v2/", None),
        ("http://[fd00::1]/v2/", None),
        # IPv4 in decimal, hexadecimal or short form is not the allowed text.
        ("http://2130706433:5000/v2/", None),
        ("http://0x7f.0.0.1:5000/v2/", None),
        ("http://127.1:5000/v2/", None),
    ],
)
def test_guarded_transport_judges_the_host_httpx_connects_to(url: str, sent_to: str | None) -> None:
    network = RecordingTransport(lambda _: httpx.Response(200))
    with httpx.Client(transport=AllowlistTransport(network, GUARDED)) as client:
        if sent_to is None:
            with pytest.raises(RegistryNotAllowedError) as refused:
                client.get(url)
            assert refused.value.code == "conversion.registry_not_allowed"
            assert network.calls == []
        else:
            assert client.get(url).status_code == 200
            [sent] = network.calls
            assert httpx.URL(sent).host.rstrip(".") == sent_to


def test_an_ipv6_refusal_names_the_origin_in_brackets() -> None:
    with pytest.raises(RegistryNotAllowedError) as refused:
        GUARDED.check_url(httpx.URL("http://[fd00::1]:5000/v2/?token=s3cret"))
    assert "http://[fd00::1]:5000" in refused.value.message
    assert "s3cret" not in refused.value.message


def test_an_upload_location_off_the_allowlist_is_refused_before_the_request() -> None:
    reference = parse_image_reference(f"{REGISTRY}/out:1")
    assert isinstance(reference, RegistryReference)

    def registry(request: httpx.Request) -> httpx.Response:
        assert request.url.host == REGISTRY
        if request.method == "POST":
            location = "http://169.254.169.254/upload/1?state=signed"
            return httpx.Response(202, headers={"Location": location})
        return httpx.Response(201)

    network = RecordingTransport(registry)
    client = RegistryClient(
        reference, push=True, transport=AllowlistTransport(network, GUARDED), sleep=lambda _: None
    )
    blob = b"layer bytes"
    descriptor = Descriptor(
        media_type="application/octet-stream",
        digest="sha256:" + hashlib.sha256(blob).hexdigest(),
        size=len(blob),
    )
    with RegistrySink(reference, client) as sink, pytest.raises(RegistryNotAllowedError) as refused:
        sink.put_blob(descriptor, io.BytesIO(blob))
    assert "169.254.169.254" in refused.value.message
    assert "signed" not in refused.value.message
    assert network.calls
    assert all(httpx.URL(call).host == REGISTRY for call in network.calls)
    assert [httpx.URL(call).path for call in network.calls] == ["/v2/out/blobs/uploads/"]


def test_settings_default_allowlist_by_profile_and_validation(tmp_path: Path) -> None:
    production = ManagerSettings(data_dir=tmp_path)
    assert production.registry_allowlist() == ()
    dev = ManagerSettings(profile="dev", data_dir=tmp_path)
    assert set(dev.registry_allowlist()) == {"localhost:*", "127.0.0.1:*", "[::1]:*"}
    explicit = ManagerSettings(
        profile="dev", data_dir=tmp_path, converter_registry_allowlist=("R.example.com:5000",)
    )
    assert explicit.registry_allowlist() == ("r.example.com:5000",)
    with pytest.raises(ValueError, match="every host"):
        ManagerSettings(data_dir=tmp_path, converter_registry_allowlist=("*",))
    assert (
        ManagerSettings(public_url="https://m.example.com/").public_url == "https://m.example.com"
    )
    for bad in ("http://m.example.com", "https://u:p@m.example.com", "https://m?x=1", "m.example"):
        with pytest.raises(ValueError, match="public_url"):
            ManagerSettings(public_url=bad)


# --------------------------------------------------------------------------- allowlist in jobs


def test_request_off_the_allowlist_is_refused_before_anything_is_queued(harness_factory) -> None:
    harness = harness_factory(**ALLOWED)
    app = _app(harness, "ssrf")
    refused = _convert(
        harness,
        app["id"],
        {"inputImageName": f"{REGISTRY}/app:1", "outputImageName": "10.0.0.1:5000/out:1"} | DEBUG,
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "conversion.registry_not_allowed"
    datashield = harness.client.post(
        harness.url("/tools/converter/convert-app"),
        json={
            "app": "ssrf",
            "inputImageName": "169.254.169.254/x:1",
            "outputImageName": f"{REGISTRY}/o:1",
        },
        headers=harness.headers(),
    )
    assert datashield.json()["code"] == "conversion.registry_not_allowed"
    with harness.runtime.db.transaction() as session:
        assert session.scalars(select(Job)).all() == []


def test_job_started_after_the_allowlist_changed_fails_before_any_connection(
    harness_factory,
) -> None:
    first = harness_factory(**ALLOWED)
    job_id = _queue(first, _app(first, "changed")["id"])
    # The operator narrowed the allowlist; the manager restarted with the queued job.
    second = harness_factory(converter_registry_allowlist=("other.example.com",))
    network = RecordingTransport(_unexpected)
    assert _worker(second, network).run_once() == job_id
    failed = _job(second, job_id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "conversion.registry_not_allowed"
    assert network.calls == []


def test_redirect_off_the_allowlist_is_never_followed(harness_factory) -> None:
    harness = harness_factory(**ALLOWED)
    job_id = _queue(harness, _app(harness, "redirect")["id"])

    def registry(request: httpx.Request) -> httpx.Response:
        assert request.url.host == REGISTRY
        return httpx.Response(307, headers={"Location": "http://169.254.169.254/latest/meta-data/"})

    network = RecordingTransport(registry)
    _worker(harness, network).run_once()
    failed = _job(harness, job_id)
    assert failed["error"]["code"] == "conversion.registry_not_allowed", failed
    assert "169.254.169.254" in failed["error"]["message"]
    assert network.calls
    assert all(httpx.URL(u).host == REGISTRY for u in network.calls)


@pytest.mark.parametrize("with_credentials", [False, True])
def test_token_realm_off_the_allowlist_is_never_contacted(
    harness_factory, with_credentials
) -> None:
    harness = harness_factory(**ALLOWED)
    extra = {"authConfig": {"username": "alice", "password": PASSWORD}} if with_credentials else {}
    job_id = _queue(harness, _app(harness, "realm")["id"], **extra)

    def registry(request: httpx.Request) -> httpx.Response:
        assert request.url.host == REGISTRY
        challenge = 'Bearer realm="https://auth.internal.example/token",service="registry"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    network = RecordingTransport(registry)
    _worker(harness, network).run_once()
    failed = _job(harness, job_id)
    assert failed["error"]["code"] == "conversion.registry_not_allowed", failed
    assert "auth.internal.example" in failed["error"]["message"]
    assert [httpx.URL(u).host for u in network.calls] == [REGISTRY]
    assert PASSWORD not in repr(failed)


def test_token_realm_on_the_allowlist_is_used(harness_factory) -> None:
    harness = harness_factory(converter_registry_allowlist=(REGISTRY, "auth.example.com"))
    job_id = _queue(harness, _app(harness, "realm-ok")["id"])

    def network_handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            return httpx.Response(200, json={"token": "t0k3n"})
        if request.headers.get("Authorization") != "Bearer t0k3n":
            challenge = 'Bearer realm="https://auth.example.com/token",service="registry"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})

    network = RecordingTransport(network_handler)
    _worker(harness, network).run_once()
    failed = _job(harness, job_id)
    assert failed["error"]["code"] == "image.not_found", failed  # Past the auth: the image.
    assert [httpx.URL(u).host for u in network.calls] == [REGISTRY, "auth.example.com", REGISTRY]


# --------------------------------------------------------------------------- manager identity


def test_manager_identity_from_settings(tmp_path: Path) -> None:
    own = tmp_path / "data" / "tls"
    own.mkdir(parents=True)
    own_ca = _ca_pem(own)
    own_pin = ca_pin_from_certificate(own_ca.read_bytes())
    serving = ManagerSettings(profile="dev", data_dir=tmp_path / "data", host="0.0.0.0", port=9443)
    assert manager_identity(serving) == (
        type(manager_identity(serving))("https://127.0.0.1:9443", own_pin)
    )
    ipv6 = ManagerSettings(profile="dev", data_dir=tmp_path / "data", host="::1", port=9443)
    assert manager_identity(ipv6).url == "https://[::1]:9443"
    public = _ca_pem(tmp_path, "public.pem")
    configured = ManagerSettings(
        data_dir=tmp_path / "data",
        public_url="https://manager.example.com",
        public_ca_file=public,
    )
    identity = manager_identity(configured)
    assert identity.url == "https://manager.example.com"
    assert identity.ca_pin == ca_pin_from_certificate(public.read_bytes()) != own_pin
    # Production without public_url does not guess a URL; plain HTTP has no CA of its own.
    plain = ManagerSettings(data_dir=tmp_path / "data", insecure_http=True)
    assert (manager_identity(plain).url, manager_identity(plain).ca_pin) == (None, None)
    broken = ManagerSettings(data_dir=tmp_path, public_ca_file=tmp_path / "missing.pem")
    with pytest.raises(UsageError) as unreadable:
        manager_identity(broken)
    assert unreadable.value.code == "conversion.manager_ca_unreadable"


def test_request_may_not_name_another_pin_and_production_needs_one(tmp_path: Path) -> None:
    public = _ca_pem(tmp_path, "public.pem")
    pin = ca_pin_from_certificate(public.read_bytes())
    body = ConversionIn(inputImageName=f"{REGISTRY}/a:1", outputImageName=f"{REGISTRY}/b:1")
    settings = ManagerSettings(data_dir=tmp_path, public_ca_file=public)
    filled = _with_manager_identity(settings, body)
    assert (filled.manager_ca_pin, filled.manager_url) == (pin, None)
    same = _with_manager_identity(settings, body.model_copy(update={"manager_ca_pin": pin}))
    assert same.manager_ca_pin == pin
    # Another URL is accepted (the pin authenticates whatever answers there).
    elsewhere = body.model_copy(update={"manager_url": "https://manager.internal:8443"})
    assert (
        _with_manager_identity(settings, elsewhere).manager_url == "https://manager.internal:8443"
    )
    with pytest.raises(UsageError) as mismatch:
        _with_manager_identity(
            settings, body.model_copy(update={"manager_ca_pin": "sha256:" + "0" * 64})
        )
    assert mismatch.value.code == "conversion.manager_ca_pin_mismatch"
    unknown = ManagerSettings(data_dir=tmp_path, insecure_http=True)
    with pytest.raises(UsageError) as missing:
        _with_manager_identity(unknown, body)
    assert missing.value.code == "conversion.manager_ca_unknown"
    # When the manager does not know its CA, production refuses a pin it cannot check (an
    # editor's own CA would otherwise land in the manifest); only the dev profile takes it.
    given = body.model_copy(update={"manager_ca_pin": pin})
    with pytest.raises(UsageError) as unchecked:
        _with_manager_identity(unknown, given)
    assert unchecked.value.code == "conversion.manager_ca_unknown"
    operator_cert = ManagerSettings(
        data_dir=tmp_path, tls_cert=public, tls_key=tmp_path / "key.pem"
    )
    with pytest.raises(UsageError) as unchecked:
        _with_manager_identity(operator_cert, given)
    assert unchecked.value.code == "conversion.manager_ca_unknown"
    dev = ManagerSettings(profile="dev", data_dir=tmp_path / "dev", insecure_http=True)
    assert _with_manager_identity(dev, given).manager_ca_pin == pin


def test_api_fills_the_manager_identity_into_the_job(harness_factory, tmp_path: Path) -> None:
    public = _ca_pem(tmp_path, "public.pem")
    harness = harness_factory(
        public_url="https://manager.example.com:8443", public_ca_file=public, **ALLOWED
    )
    app = _app(harness, "identity")
    job_id = _queue(harness, app["id"])
    with harness.runtime.db.transaction() as session:
        row = session.get(Job, job_id)
        assert row is not None
        assert row.request["manager_url"] == "https://manager.example.com:8443"
        assert row.request["manager_ca_pin"] == ca_pin_from_certificate(public.read_bytes())
    wrong = _convert(
        harness,
        app["id"],
        {
            "inputImageName": f"{REGISTRY}/app:1",
            "outputImageName": f"{REGISTRY}/out:1",
            "managerCaPin": "sha256:" + "1" * 64,
        }
        | DEBUG,
    )
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "conversion.manager_ca_pin_mismatch"


def _image_manifest(image: str) -> Any:
    """Return the enclave manifest inside a shielded image (its runtime layer is the last)."""
    with open_source(f"docker://{image}") as source:
        layer = source.manifest().layers[-1]
        with source.open_blob(layer) as reader:
            data = reader.readall()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        member = tar.extractfile("sanctum/manifest.json")
        assert member is not None
        return parse_manifest(member.read())


@pytest.mark.registry
def test_loopback_conversion_carries_the_manager_url_and_pin(
    harness_factory, push, tmp_path
) -> None:
    registry, image = push("plain", "src/identity")
    public = _ca_pem(tmp_path, "public.pem")
    # The dev profile's default allowlist admits the loopback registry.
    harness = harness_factory(public_url="https://manager.example.com", public_ca_file=public)
    app = _app(harness, "carried")
    output = f"{registry.host}/shielded/identity:1"
    accepted = _convert(
        harness, app["id"], {"inputImageName": image, "outputImageName": output} | DEBUG
    )
    assert accepted.status_code == 202, accepted.text
    harness.app.state.job_worker.run_once()
    done = _job(harness, accepted.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    pin = ca_pin_from_certificate(public.read_bytes())
    assert (done["result"]["managerUrl"], done["result"]["managerCaPin"]) == (
        "https://manager.example.com",
        pin,
    )
    assert "manager-ca-pin-missing" not in done["result"]["flags"]
    manifest = _image_manifest(output)
    assert (manifest.manager.url, manifest.manager.ca_pin) == ("https://manager.example.com", pin)


# --------------------------------------------------------------------------- restarts mid-run


class _ProcessDied(BaseException):
    """Stands for the manager process dying (not an error the worker could record)."""


@pytest.mark.registry
def test_job_interrupted_mid_run_resumes_with_its_credentials_and_the_stale_run_loses(
    harness_factory, push
) -> None:
    registry, image = push("basic", "src/midrun")
    first = harness_factory()
    app = _app(first, "midrun")
    body = {
        "inputImageName": image,
        "outputImageName": f"{registry.host}/shielded/midrun:1",
        "authConfig": {"username": "alice", "password": PASSWORD},
    } | DEBUG
    accepted = _convert(first, app["id"], body)
    job_id = accepted.json()["id"]
    stale: list[JobRun] = []

    def dies_after_the_layers(run: JobRun) -> None:
        stale.append(run)
        record = run.progress

        def progress(report: Any, *, force: bool = False) -> None:
            record(report, force=force)
            if str(report.get("step", "")).startswith("writing"):
                raise _ProcessDied  # Layers are pushed; the image manifest is not.

        object.__setattr__(run, "progress", progress)
        run_conversion(run)

    with pytest.raises(_ProcessDied):
        JobWorker(first.runtime, {CONVERSION: dies_after_the_layers}).run_once()
    with first.runtime.db.transaction() as session:
        row = session.get(Job, job_id)
        assert row is not None
        assert row.status == JobStatus.running
        assert row.secrets_sealed is not None  # Kept for the next run.
        lease_expires_at = row.lease_expires_at
    # A new manager process on the same database: the lease is still live, so it waits...
    second = harness_factory()
    assert second.app.state.job_worker.run_once() is None
    # ... and resumes the job once the lease has expired (the dead process cannot renew it).
    assert lease_expires_at is not None
    second.clock.advance(dt.timedelta(seconds=second.runtime.settings.job_lease_seconds + 1))
    assert second.app.state.job_worker.run_once() == job_id
    done = _job(second, job_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    # The first run, had it survived, would lose: its outcome never commits.
    delattr(stale[0], "progress")  # This time the stale run goes to the end.
    with pytest.raises(ConflictError) as lost:
        run_conversion(stale[0])
    assert lost.value.code == "job.lease_lost"
    with second.runtime.db.transaction() as session:
        assert [b.id for b in session.scalars(select(Build)).all()] == [done["build_id"]]
        row = session.get(Job, job_id)
        assert row is not None
        assert row.secrets_sealed is None
    assert json.dumps(done).count(PASSWORD) == 0
