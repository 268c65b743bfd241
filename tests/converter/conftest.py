"""Shared fixtures of the converter tests: test images, a real registry, and skopeo.

- Image builders (in ``converter_images.py``) write small OCI layouts by hand (tarfile + hashlib
  + json, independent of the code under test): ``busybox_image`` (a busybox-static scratch
  image), ``layered_image`` (whiteouts, an opaque directory, hard links, symlinks, empty and
  zstd layers), and ``build_image`` for any mix, Docker media types and multi-arch indexes.
- ``registry`` / ``basic_registry`` / ``token_registry`` / ``tls_registry`` start Debian's
  ``docker-registry`` on 127.0.0.1 (a free port, temporary storage): anonymous, htpasswd Basic
  auth, token auth whose realm is a tiny token server started here that signs JWTs with a
  throw-away certificate, and HTTPS with a certificate from a test CA.
- ``skopeo`` runs the independent client.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from converter_images import (
    BUSYBOX,
    LAYERED_COMPRESSION,
    BuiltImage,
    RegistryServer,
    Skopeo,
    _start_registry,
    _start_token_server,
    build_image,
    busybox_entries,
    layered_entries,
    make_tls_certificates,
)


@pytest.fixture
def busybox_image(tmp_path: Path, require_tool: Callable[..., str]) -> BuiltImage:
    require_tool(str(BUSYBOX), package="busybox-static")
    return build_image(tmp_path / "busybox-layout", [busybox_entries()])


@pytest.fixture
def layered_image(tmp_path: Path, require_tool: Callable[..., str]) -> BuiltImage:
    """A busybox image with whiteouts, an opaque dir, links, empty and zstd layers."""
    require_tool(str(BUSYBOX), package="busybox-static")
    return build_image(
        tmp_path / "layered-layout", layered_entries(), compression=LAYERED_COMPRESSION
    )


# --------------------------------------------------------------------------- skopeo


@pytest.fixture
def skopeo(require_tool: Callable[..., str], tmp_path: Path) -> Skopeo:
    """Return a function running ``skopeo ARGS...`` (with TLS verification off) -> stdout."""
    binary = require_tool("skopeo")
    tmp = tmp_path / "skopeo-tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), REGISTRY_AUTH_FILE=str(tmp / "auth.json"))

    def run(*args: str) -> str:
        command = [binary, "--insecure-policy", *args]
        if args and args[0] == "copy":
            command[3:3] = ["--src-tls-verify=false", "--dest-tls-verify=false"]
        elif args and args[0] == "inspect":
            command[3:3] = ["--tls-verify=false"]
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise AssertionError(f"skopeo {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    return run


# --------------------------------------------------------------------------- registries


@pytest.fixture(scope="session")
def _registry_binary() -> str:
    # require_tool is function-scoped; session fixtures check the binaries themselves.
    for tool, package in (("/usr/bin/docker-registry", "docker-registry"), ("skopeo", "skopeo")):
        if not shutil.which(tool):
            message = f"{tool} is missing: apt-get install -y {package}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    return "/usr/bin/docker-registry"


@pytest.fixture(scope="session")
def registry(
    _registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    """An anonymous docker-registry on 127.0.0.1."""
    root = tmp_path_factory.mktemp("registry")
    for host in _start_registry(root, None):
        yield RegistryServer(host)


@pytest.fixture(scope="session")
def basic_registry(
    _registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    """A docker-registry with htpasswd (bcrypt) Basic auth: user ``alice``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # noqa: PLC0415 (deprecated module; only glibc's bcrypt is needed here)

        hashed = crypt.crypt("s3cret-pw", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    root = tmp_path_factory.mktemp("basic-registry")
    (root / "htpasswd").write_text(f"alice:{hashed}\n")
    auth = {"htpasswd": {"realm": "sanctum-test", "path": str(root / "htpasswd")}}
    for host in _start_registry(root, auth):
        yield RegistryServer(host, "alice", "s3cret-pw")


@pytest.fixture(scope="session")
def token_registry(
    _registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    """A docker-registry with bearer-token auth; the realm is a local token server."""
    root = tmp_path_factory.mktemp("token-registry")
    service, issuer = "sanctum-test-registry", "sanctum-test-issuer"
    for tokens in _start_token_server(root, service, issuer, "bob", "t0ken-pw"):
        auth = {
            "token": {
                "realm": tokens.url,
                "service": service,
                "issuer": issuer,
                "rootcertbundle": str(root / "token-cert.pem"),
            }
        }
        for host in _start_registry(root, auth):
            yield RegistryServer(host, "bob", "t0ken-pw", tokens)


@pytest.fixture(scope="session")
def tls_registry(
    _registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    """An anonymous docker-registry serving HTTPS with a certificate from a test CA."""
    root = tmp_path_factory.mktemp("tls-registry")
    ca = make_tls_certificates(root)
    for host in _start_registry(root, None, tls=True):
        yield RegistryServer(host, ca_bundle=ca)
