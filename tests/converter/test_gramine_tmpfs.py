"""Keys, certificates and CA files the launcher writes stay inside the enclave under Gramine.

Each such file's directory becomes an in-enclave ``tmpfs`` mount in the rendered Gramine
manifest (re-parsed here with :mod:`tomllib`), unless an ``rwDir`` or ``encryptedDir`` already
holds it; a directory whose tmpfs would hide image content is refused.
"""

from __future__ import annotations

import hashlib
import tomllib
from typing import Any

import pytest
from test_manifest_format import make_manifest

from sanctum.converter.convert import ConvertRequest, check_request
from sanctum.converter.gramine import provisioned_tmpfs_dirs, render_gramine_manifest
from sanctum.converter.manifest import CaCertificateSpec, CertificateSpec, EnclaveManifest
from sanctum.converter.manifest_errors import BuildOptionError

MANIFEST_SHA = "ab" * 32


def _cert(key: str, cert: str, chain: str | None = None) -> CertificateSpec:
    return CertificateSpec(
        key_path=key,
        cert_path=cert,
        chain_path=chain,
        subject="app.demo.local",
        alt_names=("DNS:app.demo.local",),
    )


def _tmpfs(manifest: EnclaveManifest) -> list[str]:
    doc: dict[str, Any] = tomllib.loads(
        render_gramine_manifest(manifest, manifest_json_sha256=MANIFEST_SHA)
    )
    return [m["path"] for m in doc["fs"]["mounts"] if m.get("type") == "tmpfs"]


def test_default_key_and_certificate_directory_is_an_in_enclave_tmpfs() -> None:
    manifest = make_manifest(
        certificates=(
            _cert(
                "/run/sanctum/tls/key.pem",
                "/run/sanctum/tls/cert.pem",
                "/run/sanctum/tls/chain.pem",
            ),
        ),
        ca_certificates=(CaCertificateSpec(ca_path="/run/sanctum/tls/ca.pem"),),
    )
    assert _tmpfs(manifest) == ["/tmp", "/run/sanctum/tls"]


def test_directories_are_deduplicated_sorted_and_not_nested() -> None:
    manifest = make_manifest(
        certificates=(
            _cert("/var/keys/b/key.pem", "/etc/certs/app.pem"),
            _cert("/var/keys/a/key.pem", "/var/keys/a/cert.pem", "/var/keys/a/chain.pem"),
        ),
        ca_certificates=(
            CaCertificateSpec(ca_path="/var/keys/ca.pem"),
            CaCertificateSpec(ca_path="/etc/certs/ca.pem"),
        ),
    )
    # /var/keys/a and /var/keys/b lie in /var/keys, which is mounted anyway.
    assert provisioned_tmpfs_dirs(manifest) == ("/etc/certs", "/var/keys")
    assert _tmpfs(manifest) == ["/tmp", "/etc/certs", "/var/keys"]
    # The same inputs in another order render the same bytes.
    swapped = make_manifest(
        certificates=tuple(reversed(manifest.certificates)),
        ca_certificates=tuple(reversed(manifest.ca_certificates)),
    )
    assert render_gramine_manifest(
        swapped, manifest_json_sha256=MANIFEST_SHA
    ) == render_gramine_manifest(manifest, manifest_json_sha256=MANIFEST_SHA)


def test_files_inside_rw_or_encrypted_dirs_need_no_extra_mount() -> None:
    manifest = make_manifest(
        rw_dirs=("/tmp", "/run/writable"),
        encrypted_dirs=("/data",),
        certificates=(_cert("/run/writable/tls/key.pem", "/data/cert.pem", "/tmp/chain.pem"),),
        ca_certificates=(CaCertificateSpec(ca_path="/data/ca/ca.pem"),),
    )
    assert provisioned_tmpfs_dirs(manifest) == ()
    assert _tmpfs(manifest) == ["/run/writable", "/tmp"]


def test_no_certificates_no_extra_mounts() -> None:
    assert provisioned_tmpfs_dirs(make_manifest(certificates=(), ca_certificates=())) == ()


@pytest.mark.parametrize(
    ("key_path", "hidden"),
    [
        ("/srv/key.pem", "/srv/app.py"),  # A trusted file of the image.
        ("/usr/key.pem", "/usr/bin/python"),  # A trusted file below it (and a symlink).
        ("/key.pem", "/"),  # A tmpfs on / would hide everything.
        ("/sanctum/key.pem", "/sanctum/"),  # The Sanctum manifest and the launcher.
        ("/usr/bin/python3", "/usr/bin/python"),  # The key would replace a trusted file.
    ],
)
def test_a_directory_holding_image_content_is_refused(key_path: str, hidden: str) -> None:
    manifest = make_manifest(certificates=(_cert(key_path, "/run/sanctum/tls/cert.pem"),))
    with pytest.raises(BuildOptionError) as caught:
        render_gramine_manifest(manifest, manifest_json_sha256=MANIFEST_SHA)
    assert caught.value.code == "build.path_invalid"
    assert hidden in caught.value.message


def test_a_directory_above_an_rw_or_encrypted_dir_is_refused() -> None:
    # A tmpfs at /var would hide the encrypted directory /var/lib/app.
    manifest = make_manifest(
        encrypted_dirs=("/var/lib/app",),
        ca_certificates=(CaCertificateSpec(ca_path="/var/ca.pem"),),
    )
    with pytest.raises(BuildOptionError, match="/var/lib/app"):
        provisioned_tmpfs_dirs(manifest)


def test_a_ca_file_next_to_trusted_files_is_refused() -> None:
    trusted = {"/etc/ssl/certs/ca-certificates.crt": hashlib.sha256(b"bundle").hexdigest()}
    manifest = make_manifest(
        trusted_files=trusted,
        ca_certificates=(CaCertificateSpec(ca_path="/etc/ssl/certs/sanctum.pem"),),
    )
    with pytest.raises(BuildOptionError, match="caPath"):
        provisioned_tmpfs_dirs(manifest)


def _request(**certificate: str) -> ConvertRequest:
    return ConvertRequest.model_validate(
        {
            "inputImageName": "oci:in",
            "outputImageName": "oci:out",
            "debug": True,
            "encryptedDirs": ["/data"],
            "certificates": [{"keyPath": "/run/sanctum/tls/key.pem", **certificate}],
        }
    )


@pytest.mark.parametrize(
    "certificate",
    [
        {"keyPath": "/key.pem", "certPath": "/run/sanctum/tls/cert.pem"},
        {"keyPath": "/run/sanctum/tls/key.pem", "certPath": "/sanctum/cert.pem"},
        {"keyPath": "/run/sanctum/tls/key.pem", "certPath": "/cert.pem"},
        {"certPath": "/run/sanctum/tls/cert.pem", "chainPath": "/chain.pem"},
    ],
)
def test_check_request_refuses_unmountable_paths_before_reading_an_image(
    certificate: dict[str, str],
) -> None:
    with pytest.raises(BuildOptionError) as caught:
        check_request(_request(**certificate))
    assert caught.value.code == "build.path_invalid"


def test_check_request_accepts_dedicated_or_covered_directories() -> None:
    check_request(_request(certPath="/run/sanctum/tls/cert.pem"))
    check_request(_request(keyPath="/data/key.pem", certPath="/tmp/cert.pem"))
