"""Helpers and fixtures of the launcher tests: a shielded rootfs, the simulated QE, a fake manager.

The fake manager is a small HTTPS server speaking the real wire models of
:mod:`sanctum.protocol.messages`: it issues single-use nonces, parses the quote, checks the
report-data binding and an MRENCLAVE allowlist, issues a certificate for the CSR from its
account CA and seals the app's secrets to the CSR key. It stands in for the manager so the
launcher's sequence is tested end to end over real TLS with the real pinning.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import ipaddress
import json
import os
import ssl
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sanctum.attestation.quote import parse_quote
from sanctum.converter.keys import debug_signing_key
from sanctum.converter.manifest import (
    CaCertificateSpec,
    CertificateSpec,
    EnclaveManifest,
    EnclaveSpec,
    ManagerSpec,
    sign_manifest,
)
from sanctum.launcher.manager_link import ca_pin_of
from sanctum.platforms.sim_qe import SimQeServer, start_sim_qe
from sanctum.protocol.binding import check_binding, spki_der
from sanctum.protocol.messages import (
    AttestRequest,
    AttestResponse,
    ChallengeResponse,
    SealedBoxWire,
    SealedDirKey,
    SealedSecret,
    SealingContext,
    dir_key_aad,
)
from sanctum.protocol.sealing import seal, secret_aad

NOW = dt.datetime.now(dt.UTC)

APP_SCRIPT = b"""#!/bin/sh
echo "pid=$$"
echo "args=$*"
echo "db=$DB_PASSWORD"
echo "host=${HOST_ALLOWED-unset}/${HOST_SECRET-unset}"
if [ "$1" = "fail" ]; then exit 42; fi
if [ "$1" = "sleep" ]; then exec sleep 30; fi
"""


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    public_key: Any,
    names: list[x509.GeneralName],
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class FakeManager:
    """State and knobs of the fake manager."""

    url: str
    tls_ca: x509.Certificate
    account_ca: x509.Certificate
    account_key: ec.EllipticCurvePrivateKey
    allowlist: set[bytes] = field(default_factory=set)
    secrets: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)
    nonces: set[bytes] = field(default_factory=set)
    fail_next: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    sealing_app: str | None = None
    dir_keys: dict[str, bytes] = field(default_factory=dict)

    @property
    def pin(self) -> str:
        return ca_pin_of(self.tls_ca)

    def challenge(self) -> tuple[int, dict[str, Any]]:
        nonce = os.urandom(32)
        self.nonces.add(nonce)
        return 200, ChallengeResponse(
            nonce=nonce, expires_at=NOW + dt.timedelta(minutes=1)
        ).model_dump(mode="json")

    def attest(self, body: bytes) -> tuple[int, dict[str, Any]]:
        request = AttestRequest.model_validate_json(body)
        self.requests.append(json.loads(body))
        if request.nonce not in self.nonces:
            return 400, {"code": "attest.nonce_invalid", "detail": "unknown or used nonce"}
        self.nonces.discard(request.nonce)
        quote = parse_quote(request.quote)
        csr = x509.load_pem_x509_csr(request.csr.encode())
        check_binding(quote.report_data, request.nonce, spki_der(csr.public_key()))
        if quote.body.mr_enclave not in self.allowlist:  # type: ignore[union-attr]
            return 403, {
                "code": "attest.build_not_allowlisted",
                "detail": "the measurement is not an allowlisted build of app bank",
            }
        try:
            names = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            names = []
        leaf = _leaf(self.account_key, self.account_ca, csr.public_key(), names)
        context = SealingContext(
            manager_id="fake", app=self.sealing_app or request.app, build="b1", nonce=request.nonce
        )
        sealed = []
        for name, (delivery, target, value) in self.secrets.items():
            aad = secret_aad(name=name, delivery=delivery, target=target)
            box = seal(csr.public_key(), value, info=context.info(), aad=aad)
            sealed.append(
                SealedSecret(
                    name=name,
                    delivery=delivery,  # type: ignore[arg-type]
                    path=target if delivery == "file" else None,
                    env_name=target if delivery == "env" else None,
                    box=SealedBoxWire.from_box(box),
                )
            )
        sealed_keys = [
            SealedDirKey(
                path=path,
                version=1,
                box=SealedBoxWire.from_box(
                    seal(
                        csr.public_key(),
                        key,
                        info=context.info(),
                        aad=dir_key_aad(path=path, version=1),
                    )
                ),
            )
            for path, key in self.dir_keys.items()
        ]
        answer = AttestResponse(
            certificate=_pem(leaf),
            chain=[],
            ca=_pem(self.account_ca),
            sealing=context,
            sealed_secrets=sealed,
            sealed_dir_keys=sealed_keys,
            token="header.payload.signature",
            expires_at=leaf.not_valid_after_utc,
        )
        return 200, answer.model_dump(mode="json")


def _handler(manager: FakeManager) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if manager.fail_next:
                status, doc = (
                    manager.fail_next.pop(0),
                    {"code": "service.unavailable", "detail": "x"},
                )
            elif self.path == "/v1/attest/challenge":
                status, doc = manager.challenge()
            elif self.path == "/v1/attest":
                status, doc = manager.attest(body)
            else:
                status, doc = 404, {"code": "request.not_found", "detail": "no"}
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def fake_manager(tmp_path: Path) -> Iterator[FakeManager]:
    tls_key, tls_ca = _ca("Fake Manager TLS CA")
    account_key, account_ca = _ca("Fake Account CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _leaf(
        tls_key,
        tls_ca,
        server_key.public_key(),
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    chain = tmp_path / "server-chain.pem"
    chain.write_text(_pem(server_cert) + _pem(tls_ca))
    key_file = tmp_path / "server.key"
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key_file)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    manager = FakeManager(
        url=f"https://127.0.0.1:{server.server_address[1]}",
        tls_ca=tls_ca,
        account_ca=account_ca,
        account_key=account_key,
    )
    server.RequestHandlerClass = _handler(manager)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield manager
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def sim_qe(tmp_path: Path) -> Iterator[SimQeServer]:
    server = start_sim_qe(tmp_path / "sim-state", port=0)
    server.start_in_thread()
    yield server
    server.close()


@dataclass
class Shielded:
    root: Path
    manifest: EnclaveManifest
    mrenclave: bytes


def build_shielded_root(
    root: Path,
    *,
    pin: str | None,
    url: str | None = None,
    allow_cmdline_args: bool = False,
    user: str = "",
) -> Shielded:
    """Write a small image rootfs with an app script and a signed manifest."""
    files = {
        "/app/run.sh": APP_SCRIPT,
        "/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        "/etc/group": b"root:x:0:\napp:x:1000:\n",
        "/sanctum/launcher": b"launcher placeholder for tests\n",
    }
    for path, data in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (root / "app/run.sh").chmod(0o755)
    (root / "app/current").symlink_to("run.sh")
    manifest = EnclaveManifest(
        target="simulated",
        app="bank",
        entrypoint=("/app/run.sh",),
        args=("default-arg",),
        workdir="/app",
        user=user,
        env={"PATH": "/usr/bin:/bin", "GREETING": "hello"},
        allow_cmdline_args=allow_cmdline_args,
        host_env_passthrough=("HOST_ALLOWED",),
        encrypted_dirs=(),
        rw_dirs=("/tmp",),
        enclave=EnclaveSpec(size=1 << 30, threads=8, debug=True, isvprodid=1, isvsvn=2),
        trusted_files={p: hashlib.sha256(d).hexdigest() for p, d in files.items()},
        symlinks={"/app/current": "run.sh"},
        manager=ManagerSpec(url=url, ca_pin=pin),
        certificates=(
            CertificateSpec(
                key_path="/run/tls/key.pem",
                cert_path="/run/tls/cert.pem",
                chain_path="/run/tls/chain.pem",
                subject="bank.demo.local",
                alt_names=("DNS:bank.demo.local",),
            ),
        ),
        ca_certificates=(CaCertificateSpec(ca_path="/run/tls/ca.pem", system=True),),
    )
    signed = sign_manifest(manifest, key=debug_signing_key(), date=dt.date(2026, 1, 1))
    (root / "sanctum/manifest.json").write_bytes(signed.manifest_bytes)
    (root / "sanctum/manifest.sigstruct").write_bytes(signed.sigstruct.to_bytes())
    return Shielded(root=root, manifest=manifest, mrenclave=signed.mrenclave)


# OCI images for podman tests --------------------------------------------------------------------

CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "host"
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
"""


def _blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{digest}"


def write_oci_image(
    layout: Path, tag: str, files: dict[str, tuple[bytes, int]], config: dict[str, Any]
) -> str:
    """Write a one-layer OCI layout holding ``files`` (path -> (data, mode)); return its ref."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories = sorted({str(Path(p).parent).lstrip("/") for p in files} - {""})
        for directory in directories:
            parts = directory.split("/")
            for i in range(1, len(parts) + 1):
                name = "/".join(parts[:i])
                if name not in tar.getnames():
                    info = tarfile.TarInfo(name)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
        for path, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    layer = buffer.getvalue()
    layer_digest = _blob(layout, layer)
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "sanctum launcher tests"}],
    }
    config_bytes = json.dumps(image_config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _blob(layout, config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest).encode()
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(
        json.dumps({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": _blob(layout, manifest_bytes),
                "size": len(manifest_bytes),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        })
    )  # fmt: skip
    return f"oci:{layout}:{tag}"
