"""Builders of small test images and helpers to run a loopback registry (used by conftest.py).

Image builders write OCI layouts by hand (tarfile + hashlib + json), independently of the code
under test. The registry helpers start Debian's ``docker-registry`` on 127.0.0.1 and, for token
auth, a tiny token server that signs JWTs with a throw-away certificate.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import secrets
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

import httpx
import zstandard

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

Skopeo = Callable[..., str]
Compression = Literal["none", "gzip", "zstd"]
_OCI_LAYER = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
_DOCKER_LAYER = {
    "none": "application/vnd.docker.image.rootfs.diff.tar",
    "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "zstd": "application/vnd.docker.image.rootfs.diff.tar.gzip",
}


# --------------------------------------------------------------------------- image builders


@dataclass(frozen=True)
class TarEntry:
    """One member of a test layer."""

    name: str
    kind: Literal["file", "dir", "symlink", "hardlink", "fifo"] = "file"
    data: bytes = b""
    mode: int = 0o644
    link: str = ""
    uid: int = 0
    gid: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()


def file(name: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> TarEntry:
    return TarEntry(name, "file", data, mode, uid=uid, gid=gid)


def directory(name: str, mode: int = 0o755) -> TarEntry:
    return TarEntry(name, "dir", mode=mode)


def symlink(name: str, target: str) -> TarEntry:
    return TarEntry(name, "symlink", mode=0o777, link=target)


def hardlink(name: str, target: str) -> TarEntry:
    return TarEntry(name, "hardlink", mode=0o644, link=target)


def whiteout(path: str) -> TarEntry:
    parent, _, base = path.rpartition("/")
    return TarEntry(f"{parent}/.wh.{base}" if parent else f".wh.{base}")


def opaque(directory_path: str) -> TarEntry:
    return TarEntry(f"{directory_path.rstrip('/')}/.wh..wh..opq")


def tar_bytes(entries: Sequence[TarEntry]) -> bytes:
    """Return a deterministic tar stream of ``entries``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mode, info.uid, info.gid, info.mtime = entry.mode, entry.uid, entry.gid, 0
            info.pax_headers = {
                f"SCHILY.xattr.{name}": value.decode("utf-8", "surrogateescape")
                for name, value in entry.xattrs
            }
            if entry.kind == "file":
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[entry.kind]
            info.linkname = entry.link
            tar.addfile(info)
    return out.getvalue()


def compress(data: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class BuiltImage:
    """A test image written to an OCI layout."""

    layout: Path
    tag: str
    manifest: bytes
    manifest_digest: str
    config: bytes
    config_digest: str
    layers: list[dict[str, Any]]
    diff_ids: list[str]
    index_digest: str | None = None

    @property
    def ref(self) -> str:
        return f"oci:{self.layout}:{self.tag}"


def _write_blob(layout: Path, data: bytes) -> str:
    digest = sha256(data)
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def _image_blobs(
    layout: Path,
    layers: Sequence[Sequence[TarEntry] | bytes],
    *,
    compression: Compression | Sequence[Compression],
    docker: bool,
    config_overrides: dict[str, Any] | None,
    architecture: str,
) -> tuple[bytes, bytes, list[dict[str, Any]], list[str]]:
    kinds = [compression] * len(layers) if isinstance(compression, str) else list(compression)
    layer_descs, diff_ids = [], []
    for layer, kind in zip(layers, kinds, strict=True):
        plain = layer if isinstance(layer, bytes) else tar_bytes(layer)
        blob = compress(plain, kind)
        digest = _write_blob(layout, blob)
        media = (_DOCKER_LAYER if docker else _OCI_LAYER)[kind]
        layer_descs.append({"mediaType": media, "digest": digest, "size": len(blob)})
        diff_ids.append(sha256(plain))
    run: dict[str, Any] = {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Entrypoint": ["/bin/sh"],
        "Cmd": ["-c", "echo hello"],
        "WorkingDir": "/",
    }
    run.update(config_overrides or {})
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": run,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
        },
        separators=(",", ":"),
    ).encode()
    config_digest = _write_blob(layout, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                "digest": config_digest,
                "size": len(config),
            },
            "layers": layer_descs,
        },
        indent=2,  # Not compact on purpose: the bytes must be kept exactly, not re-serialised.
    ).encode()
    _write_blob(layout, manifest)
    return manifest, config, layer_descs, diff_ids


def build_image(
    layout: Path,
    layers: Sequence[Sequence[TarEntry] | bytes],
    *,
    compression: Compression | Sequence[Compression] = "gzip",
    docker: bool = False,
    tag: str = "latest",
    config: dict[str, Any] | None = None,
    multi_arch: bool = False,
) -> BuiltImage:
    """Write an image (or a linux/arm64 + linux/amd64 index) into an OCI layout."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    manifest, config_raw, layer_descs, diff_ids = _image_blobs(
        layout,
        layers,
        compression=compression,
        docker=docker,
        config_overrides=config,
        architecture="amd64",
    )
    manifest_digest = sha256(manifest)
    top = {"mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST}
    top |= {"digest": manifest_digest, "size": len(manifest)}
    index_digest = None
    if multi_arch:
        arm_manifest, *_ = _image_blobs(
            layout,
            [[file("arch", b"arm64\n")]],
            compression="gzip",
            docker=docker,
            config_overrides=None,
            architecture="arm64",
        )
        entries = [
            {
                "mediaType": top["mediaType"],
                "digest": sha256(arm_manifest),
                "size": len(arm_manifest),
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            },
            top | {"platform": {"architecture": "amd64", "os": "linux"}},
        ]
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_LIST if docker else OCI_INDEX,
                "manifests": entries,
            }
        ).encode()
        index_digest = _write_blob(layout, index)
        top = {"mediaType": DOCKER_LIST if docker else OCI_INDEX}
        top |= {"digest": index_digest, "size": len(index)}
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return BuiltImage(
        layout=layout,
        tag=tag,
        manifest=manifest,
        manifest_digest=manifest_digest,
        config=config_raw,
        config_digest=sha256(config_raw),
        layers=layer_descs,
        diff_ids=diff_ids,
        index_digest=index_digest,
    )


BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = ("sh", "ls", "cat", "echo", "env")


def busybox_entries() -> list[TarEntry]:
    """Entries of a scratch image holding busybox-static and a few applet links."""
    entries = [directory("bin"), file("bin/busybox", BUSYBOX.read_bytes(), 0o755)]
    entries += [symlink(f"bin/{applet}", "busybox") for applet in BUSYBOX_APPLETS]
    entries += [directory("etc"), file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")]
    return entries


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class TokenServer:
    """A token endpoint for docker-registry's token auth, signing JWTs with a test key."""

    url: str
    username: str
    password: str
    requests: list[dict[str, list[str]]] = field(default_factory=list)


@dataclass
class RegistryServer:
    """A running docker-registry."""

    host: str
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None
    ca_bundle: Path | None = None

    def ref(self, repository: str, tag: str = "latest") -> str:
        return f"docker://{self.host}/{repository}:{tag}"

    def creds(self) -> list[str]:
        return [] if self.username is None else [f"{self.username}:{self.password}"]


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"docker-registry exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1, verify=False)  # Readiness only; tests check TLS.
        except httpx.HTTPError:
            time.sleep(0.05)
            continue
        return
    raise AssertionError(f"docker-registry did not start at {url}")


def _start_registry(root: Path, auth: dict[str, Any] | None, *, tls: bool = False) -> Iterator[str]:
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if auth:
        config["auth"] = auth
    if tls:
        config["http"]["tls"] = {
            "certificate": str(root / "server.pem"),
            "key": str(root / "server.key"),
        }
    config_path = root / "config.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML.
    env = dict(os.environ, REGISTRY_HTTP_SECRET=secrets.token_hex(16))
    process = subprocess.Popen(
        ["/usr/bin/docker-registry", "serve", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=(root / "registry.log").open("wb"),
        env=env,
    )
    try:
        _wait_ready(f"{'https' if tls else 'http'}://127.0.0.1:{port}/v2/", process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _make_signing_cert(root: Path) -> tuple[Any, bytes]:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sanctum test token signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (root / "token-cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert.public_bytes(serialization.Encoding.DER)


def _start_token_server(
    root: Path, service: str, issuer: str, username: str, password: str
) -> Iterator[TokenServer]:
    import jwt  # noqa: PLC0415

    key, cert_der = _make_signing_cert(root)
    x5c = [base64.b64encode(cert_der).decode()]
    server_state = TokenServer("", username, password)
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            server_state.requests.append(query)
            header = self.headers.get("Authorization")
            if header is not None and header != expected:
                self.send_response(401)
                self.end_headers()
                return
            access = []
            if header is not None:
                for scope in query.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
            now = int(time.time())
            claims = {
                "iss": issuer,
                "sub": username if header else "",
                "aud": service,
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": secrets.token_hex(8),
                "access": access,
            }
            token = jwt.encode(claims, key, algorithm="RS256", headers={"x5c": x5c})
            body = json.dumps({"token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}/token"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()


def replace_manifest(image: BuiltImage, manifest: dict[str, Any]) -> bytes:
    """Write a modified manifest into the image's layout and point the tag to it."""
    raw = json.dumps(manifest).encode()
    _write_blob(image.layout, raw)
    index = json.loads((image.layout / "index.json").read_text())
    index["manifests"][0] |= {"digest": sha256(raw), "size": len(raw)}
    (image.layout / "index.json").write_text(json.dumps(index))
    return raw


def replace_config(image: BuiltImage, config: dict[str, Any]) -> bytes:
    """Write a modified config and a manifest pointing to it; return the config bytes."""
    raw = json.dumps(config).encode()
    _write_blob(image.layout, raw)
    manifest = json.loads(image.manifest)
    manifest["config"] |= {"digest": sha256(raw), "size": len(raw)}
    replace_manifest(image, manifest)
    return raw


def layered_entries() -> list[list[TarEntry] | bytes]:
    """Layers exercising every changeset rule: whiteouts, opaque dirs, links, empty layers."""
    return [
        busybox_entries(),
        [
            directory("app"),
            file("app/keep.txt", b"keep"),
            file("app/gone.txt", b"gone"),
            directory("app/cache"),
            file("app/cache/old", b"old"),
            file("app/tool", b"#!/bin/sh\necho tool\n", 0o755),
            symlink("app/link", "tool"),
        ],
        [],
        [
            whiteout("app/gone.txt"),
            opaque("app/cache"),
            file("app/cache/new", b"new"),
            hardlink("app/tool-hard", "app/tool"),
            file("etc/motd", b"zstd layer\n", 0o600, uid=1000, gid=1000),
        ],
        b"",
    ]


LAYERED_COMPRESSION: list[Compression] = ["gzip", "gzip", "gzip", "zstd", "none"]


def make_tls_certificates(root: Path) -> Path:
    """Write a test CA (``ca.pem``) and a server certificate for 127.0.0.1; return the CA path."""
    import ipaddress  # noqa: PLC0415

    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("sanctum test CA"))
        .issuer_name(name("sanctum test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (root / "ca.pem").write_bytes(ca.public_bytes(pem))
    (root / "server.pem").write_bytes(cert.public_bytes(pem))
    (root / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return root / "ca.pem"
