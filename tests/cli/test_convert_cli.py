"""``sanctum convert`` on OCI layouts (no registry needed)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from click.testing import CliRunner

from sanctum.cli.main import cli
from sanctum.converter.keys import generate_signing_key, signing_key_mrsigner, signing_key_pem


def _blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return "sha256:" + digest


def _layout(path: Path) -> str:
    """Write a one-layer OCI layout by hand and return its reference."""
    (path / "blobs" / "sha256").mkdir(parents=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("bin/app")
        info.size, info.mode = 5, 0o755
        tar.addfile(info, io.BytesIO(b"hello"))
    plain = raw.getvalue()
    layer = gzip.compress(plain, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/app"], "Env": ["A=1"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(plain).hexdigest()]},
    }).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _blob(path, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _blob(path, layer), "size": len(layer)}],
    }).encode()  # fmt: skip
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _blob(path, manifest), "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }],
    }  # fmt: skip
    (path / "index.json").write_text(json.dumps(index))
    return f"oci:{path}:v1"


def test_convert_json_output(tmp_path: Path) -> None:
    source = _layout(tmp_path / "in")
    result = CliRunner().invoke(
        cli,
        ["convert", source, f"oci:{tmp_path / 'out'}:v1", "--debug", "--mem", "256M",
         "--threads", "4", "--env", "B=2", "--encrypted-dir", "/data", "--target", "simulated",
         "--offline", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    response = json.loads(result.output)
    assert response["newImage"] == f"oci:{tmp_path / 'out'}:v1"
    assert response["imageDigest"].startswith("sha256:")
    assert response["target"] == "simulated"
    assert set(response["flags"]) == {
        "debug",
        "default-signing-key",
        "simulated",
        "launcher-exec-shim",
    }
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == response["imageDigest"]


def test_convert_with_own_key_and_launcher_prints_fields(tmp_path: Path) -> None:
    key = generate_signing_key()
    (tmp_path / "key.pem").write_bytes(signing_key_pem(key))
    (tmp_path / "launcher").write_bytes(b"\x7fELF launcher")
    source = _layout(tmp_path / "in")
    result = CliRunner().invoke(
        cli,
        ["convert", source, f"oci:{tmp_path / 'out'}:v1",
         "--signing-key", str(tmp_path / "key.pem"), "--launcher", str(tmp_path / "launcher"),
         "--isvprodid", "7", "--isvsvn", "3", "--target", "simulated"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert signing_key_mrsigner(key).hex() in result.output
    assert "converted" in result.output
    assert "isvprodid      7" in result.output


def test_convert_refuses_the_debug_key_without_debug(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["convert", _layout(tmp_path / "in"), f"oci:{tmp_path / 'out'}:v1", "--json"]
    )
    assert result.exit_code == 2
    assert json.loads(result.output)["error"]["code"] == "signing_key.debug_key_requires_debug"
    assert not (tmp_path / "out" / "index.json").exists()


def test_convert_bad_env_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["convert", _layout(tmp_path / "in"), f"oci:{tmp_path / 'out'}", "--env", "NOEQUALS"]
    )
    assert result.exit_code == 2


def test_convert_refuses_bad_manager_settings_before_reading(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["convert", _layout(tmp_path / "in"), f"oci:{tmp_path / 'out'}:v1", "--debug",
         "--manager-url", "http://plain.example", "--json"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert json.loads(result.output)["error"]["code"] == "build.option_invalid"
    assert not (tmp_path / "out" / "index.json").exists()


def test_same_digest_from_separate_processes(tmp_path: Path) -> None:
    source = _layout(tmp_path / "in")
    digests = []
    for seed, zone in (("1", "Pacific/Auckland"), ("2", "UTC")):
        out = tmp_path / f"out-{seed}"
        result = subprocess.run(
            [sys.executable, "-m", "sanctum", "convert", source, f"oci:{out}:v1", "--debug",
             "--target", "simulated", "--offline", "--json"],
            capture_output=True, text=True, check=False,
            env={**os.environ, "PYTHONHASHSEED": seed, "TZ": zone},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        digests.append(json.loads(result.stdout)["imageDigest"])
    assert digests[0] == digests[1]
