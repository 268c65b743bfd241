"""The conversion pipeline, from an OCI layout (or a registry) to a shielded image."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from converter_images import (
    BUSYBOX,
    LAYERED_COMPRESSION,
    BuiltImage,
    RegistryServer,
    Skopeo,
    build_image,
    directory,
    file,
    layered_entries,
    symlink,
    whiteout,
)

from gramine_stand_in import stand_in_gramine_tools
from sanctum.converter.convert import (
    ConvertProgress,
    ConvertRequest,
    ConvertResponse,
    PemSigningKey,
    convert,
    parse_mem_size,
)
from sanctum.converter.errors import ImageError, RegistryUnavailable
from sanctum.converter.keys import (
    debug_signing_key,
    generate_signing_key,
    signing_key_mrsigner,
    signing_key_pem,
)
from sanctum.converter.manifest import verify_signed_manifest
from sanctum.converter.manifest_errors import BuildOptionError, ManifestError, SigningKeyError
from sanctum.converter.oci import MemoryImageStore, RegistryAuth, open_sink, open_source
from sanctum.converter.oci.model import Manifest

LAUNCHER = b"#!/bin/sh\necho launcher\n"


def _layers() -> list[Any]:
    return [
        [
            directory("app"),
            file("app/server.py", b"print('hi')\n", 0o755),
            file("app/old.txt", b"old"),
            directory("data"),
            file("data/seed.db", b"seed"),
            directory("bin"),
            file("bin/sh", b"\x7fELF-sh", 0o755),
        ],
        [whiteout("app/old.txt"), symlink("app/current", "server.py"), file("etc/motd", b"hello")],
    ]


@pytest.fixture
def image(tmp_path: Path) -> BuiltImage:
    return build_image(
        tmp_path / "layout",
        _layers(),
        config={
            "Entrypoint": ["/usr/bin/python3"],
            "Cmd": ["/app/server.py"],
            "Env": ["PATH=/usr/bin:/bin", "MODE=prod"],
            "WorkingDir": "/app",
            "User": "1000",
        },
    )


def _request(**overrides: Any) -> ConvertRequest:
    fields: dict[str, Any] = {
        "inputImageName": "oci:in",
        "outputImageName": "oci:out",
        "debug": True,
        "memSize": "1G",
        "threads": 8,
        "encryptedDirs": ["/data"],
        "manifestEnv": {"EXTRA": "1"},
        "isvprodid": 4,
        "isvsvn": 2,
    }
    fields.update(overrides)
    return ConvertRequest.model_validate(fields)


def _run(
    image: BuiltImage, sink: MemoryImageStore, request: ConvertRequest, **kw: Any
) -> ConvertResponse:
    kw.setdefault("launcher_asset", LAUNCHER)
    kw.setdefault("gramine_tools", None)
    with open_source(image.ref) as source:
        return convert(request, source=source, sink=sink, **kw)


def _runtime_files(sink: MemoryImageStore, response: ConvertResponse) -> dict[str, bytes]:
    manifest = Manifest.parse(sink.blobs[response.image_digest])
    blob = sink.blobs[manifest.layers[-1].digest]
    out = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                out["/" + member.name] = handle.read()
    return out


def test_convert_keeps_layers_and_adds_one(image: BuiltImage) -> None:
    sink = MemoryImageStore()
    response = _run(image, sink, _request())
    out = Manifest.parse(sink.blobs[response.image_digest])
    original = Manifest.parse(image.manifest)
    assert out.layers[:-1] == original.layers  # Same descriptors: copied by digest.
    for layer in original.layers:
        blob_path = image.layout / "blobs" / "sha256" / layer.digest.removeprefix("sha256:")
        assert sink.blobs[layer.digest] == blob_path.read_bytes()  # Byte for byte.
    assert len(out.layers) == len(original.layers) + 1
    assert out.layers[-1].digest == response.runtime_layer_digest
    config = json.loads(sink.blobs[out.config.digest])
    assert config["config"]["Entrypoint"] == ["/sanctum/launcher"]
    assert "Cmd" not in config["config"]
    assert config["rootfs"]["diff_ids"][:-1] == image.diff_ids
    assert config["config"]["Labels"]["org.sanctum.mrenclave"] == response.mrenclave
    assert config["created"] == "2026-01-01T00:00:00Z"
    assert response.layers_uploaded == 2
    assert response.image_size == out.size + out.config.size + sum(d.size for d in out.layers)
    assert response.target == "simulated"
    assert set(response.flags) == {"debug", "default-signing-key", "simulated"}


def test_the_signed_manifest_verifies_and_records_the_image(image: BuiltImage) -> None:
    sink = MemoryImageStore()
    response = _run(image, sink, _request())
    files = _runtime_files(sink, response)
    assert files["/sanctum/launcher"] == LAUNCHER
    manifest = verify_signed_manifest(
        files["/sanctum/manifest.json"],
        files["/sanctum/manifest.sigstruct"],
        expected_mrsigner=signing_key_mrsigner(debug_signing_key()),
    )
    assert response.mrenclave == hashlib.sha256(files["/sanctum/manifest.json"]).hexdigest()
    assert response.mrsigner == signing_key_mrsigner(debug_signing_key()).hex()
    assert manifest.entrypoint == ("/usr/bin/python3",)
    assert manifest.args == ("/app/server.py",)
    assert manifest.workdir == "/app"
    assert manifest.user == "1000"
    assert dict(manifest.env) == {"PATH": "/usr/bin:/bin", "MODE": "prod", "EXTRA": "1"}
    assert manifest.trusted_files["/app/server.py"] == hashlib.sha256(b"print('hi')\n").hexdigest()
    assert manifest.trusted_files["/sanctum/launcher"] == hashlib.sha256(LAUNCHER).hexdigest()
    assert "/app/old.txt" not in manifest.trusted_files  # Whited out.
    assert "/data/seed.db" not in manifest.trusted_files  # Under an encrypted dir.
    assert manifest.symlinks["/app/current"] == "server.py"
    assert manifest.encrypted_dirs == ("/data",)
    assert manifest.rw_dirs == ("/tmp",)
    assert (manifest.enclave.size, manifest.enclave.threads) == (2**30, 8)
    assert (manifest.enclave.isvprodid, manifest.enclave.isvsvn, manifest.enclave.debug) == (
        4,
        2,
        True,
    )
    assert response.trusted_files == len(manifest.trusted_files)
    gramine = tomllib.loads(files["/sanctum/gramine.manifest.toml"].decode())
    assert gramine["sgx"]["enclave_size"] == "1G"
    assert gramine["libos"]["entrypoint"] == "/sanctum/launcher"


def test_conversion_is_reproducible_and_skips_existing_layers(image: BuiltImage) -> None:
    first, second = MemoryImageStore(), MemoryImageStore()
    a = _run(image, first, _request())
    b = _run(image, second, _request())
    assert a.image_digest == b.image_digest
    assert first.blobs == second.blobs
    again = _run(image, first, _request())
    assert again.image_digest == a.image_digest
    assert (again.layers_uploaded, again.layers_skipped) == (0, 2)


def test_options_change_the_measurement(image: BuiltImage) -> None:
    a = _run(image, MemoryImageStore(), _request())
    b = _run(image, MemoryImageStore(), _request(manifestEnv={"EXTRA": "2"}))
    assert a.mrenclave != b.mrenclave
    assert a.image_digest != b.image_digest


def test_explicit_now_sets_the_history_time(image: BuiltImage) -> None:
    sink = MemoryImageStore()
    now = dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    response = _run(image, sink, _request(), now=now)
    config = json.loads(sink.blobs[response.config_digest])
    assert config["history"][-1]["created"] == "2030-05-06T07:08:09Z"


def test_production_builds_need_their_own_key(image: BuiltImage) -> None:
    with pytest.raises(SigningKeyError) as info:
        _run(image, MemoryImageStore(), _request(debug=False))
    assert info.value.code == "signing_key.debug_key_requires_debug"
    key = generate_signing_key()
    pem = signing_key_pem(key).decode()
    response = _run(image, MemoryImageStore(), _request(debug=False, signingKey={"pem": pem}))
    assert response.mrsigner == signing_key_mrsigner(key).hex()
    assert response.flags == ("simulated",)
    assert not response.debug
    # The public debug key given as a PEM is still the debug key.
    debug_pem = signing_key_pem(debug_signing_key()).decode()
    with pytest.raises(SigningKeyError):
        _run(
            image,
            MemoryImageStore(),
            _request(debug=False, signingKey=PemSigningKey(pem=debug_pem)),
        )


def test_entrypoint_override_follows_docker_rules(image: BuiltImage) -> None:
    sink = MemoryImageStore()
    response = _run(image, sink, _request(entrypoint=["/bin/sh"], allowCmdlineArgs=True))
    manifest = verify_signed_manifest(
        *(
            _runtime_files(sink, response)[p]
            for p in ("/sanctum/manifest.json", "/sanctum/manifest.sigstruct")
        )
    )
    assert manifest.entrypoint == ("/bin/sh",)
    assert manifest.args == ()  # Overriding the entrypoint drops the image's Cmd.
    assert manifest.allow_cmdline_args


def test_exec_shim_is_used_and_flagged_without_a_launcher(image: BuiltImage) -> None:
    sink = MemoryImageStore()
    response = _run(image, sink, _request(), launcher_asset=None)
    assert "launcher-exec-shim" in response.flags
    files = _runtime_files(sink, response)
    shim = files["/sanctum/launcher"]
    assert shim.startswith(b"#!/bin/sh\n")
    assert b"exec env -i" in shim
    assert b"/usr/bin/python3" in shim
    manifest = verify_signed_manifest(
        files["/sanctum/manifest.json"], files["/sanctum/manifest.sigstruct"]
    )
    assert manifest.trusted_files["/sanctum/launcher"] == hashlib.sha256(shim).hexdigest()


def test_progress_reports_every_layer(image: BuiltImage) -> None:
    events: list[ConvertProgress] = []
    _run(image, MemoryImageStore(), _request(), progress=events.append)
    done = [e for e in events if e.event == "layer-done"]
    assert sorted(e.layer for e in done if e.layer is not None) == [0, 1]
    assert all(e.outcome == "uploaded" for e in done)
    assert any(e.event == "layer-advance" for e in events)
    assert any(e.event == "step" for e in events)


def test_docker_media_types_are_kept(tmp_path: Path) -> None:
    image = build_image(tmp_path / "docker", _layers(), docker=True)
    sink = MemoryImageStore()
    response = _run(image, sink, _request())
    out = Manifest.parse(sink.blobs[response.image_digest])
    assert out.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert out.config.media_type == "application/vnd.docker.container.image.v1+json"
    assert out.layers[-1].media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"


def test_an_already_shielded_image_is_refused(image: BuiltImage, tmp_path: Path) -> None:
    sink = MemoryImageStore()
    _run(image, sink, _request())
    with pytest.raises(BuildOptionError) as info:
        convert(
            _request(),
            source=sink,
            sink=MemoryImageStore(),
            launcher_asset=LAUNCHER,
            gramine_tools=None,
        )
    assert "already" in info.value.message


def test_a_corrupt_layer_writes_no_manifest(image: BuiltImage) -> None:
    layer = Manifest.parse(image.manifest).layers[1]
    path = image.layout / "blobs" / "sha256" / layer.digest.removeprefix("sha256:")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    sink = MemoryImageStore()
    with pytest.raises(ImageError) as info:
        _run(image, sink, _request())
    assert info.value.code in {"image.digest_mismatch", "image.malformed"}
    assert not sink.tags
    assert layer.digest not in sink.blobs


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"memSize": "3G"}, BuildOptionError),
        ({"memSize": "lots"}, BuildOptionError),
        ({"encryptedDirs": ["data"]}, BuildOptionError),
        ({"rwDirs": ["/"]}, BuildOptionError),
        ({"encryptedDirs": ["/sanctum"]}, BuildOptionError),
        ({"target": "gramine-sgx"}, BuildOptionError),
    ],
)
def test_bad_options_are_refused(
    image: BuiltImage, overrides: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        _run(image, MemoryImageStore(), _request(**overrides))


def test_parse_mem_size() -> None:
    assert parse_mem_size("2G") == 2**31
    assert parse_mem_size("2048M") == 2**31
    assert parse_mem_size("512k") == 2**19
    assert parse_mem_size(4096) == 4096
    with pytest.raises(BuildOptionError):
        parse_mem_size("1.5G")
    with pytest.raises(BuildOptionError):
        parse_mem_size(0)


def test_request_uses_data_shield_field_names() -> None:
    request = ConvertRequest.model_validate_json(
        json.dumps(
            {
                "inputImageName": "docker://r/in:1",
                "outputImageName": "docker://r/out:1",
                "inputAuthConfig": {"username": "u", "password": "secret-pw"},
                "memSize": "2048M",
                "entrypointArgs": ["-v"],
                "manifestEnv": ["A=1", "B=x=y"],
                "caCertificates": [{"caPath": "/ca.pem", "system": True}],
                "certificates": [
                    {
                        "keyPath": "/k",
                        "certPath": "/c",
                        "keyType": "rsa",
                        "keyParam": {"size": 3072},
                    }
                ],
            }
        )
    )
    assert request.manifest_env == {"A": "1", "B": "x=y"}
    assert request.certificates[0].to_spec().key_size == 3072
    assert "secret-pw" not in repr(request)
    with pytest.raises(ValueError, match="extra"):
        ConvertRequest.model_validate({"inputImageName": "a", "outputImageName": "b", "bogus": 1})
    response_keys = set(ConvertResponse.model_fields)
    dumped = {ConvertResponse.model_fields[k].alias for k in response_keys}
    assert {
        "newImage",
        "imageDigest",
        "imageSize",
        "mrenclave",
        "mrsigner",
        "isvprodid",
        "isvsvn",
    } <= dumped


def test_gramine_target_with_stand_in_tools(image: BuiltImage, tmp_path: Path) -> None:
    tools = stand_in_gramine_tools(tmp_path / "bin")
    sink = MemoryImageStore()
    response = _run(image, sink, _request(target="auto"), gramine_tools=tools)
    assert response.target == "gramine-sgx"
    assert "simulated" not in response.flags
    files = _runtime_files(sink, response)
    toml_bytes = files["/sanctum/gramine.manifest.toml"]
    assert response.mrenclave == hashlib.sha256(b"pages" + toml_bytes).hexdigest()
    assert files["/sanctum/gramine.manifest.sgx"] == toml_bytes
    manifest = verify_signed_manifest(
        files["/sanctum/manifest.json"], files["/sanctum/manifest.sigstruct"]
    )
    assert manifest.target == "gramine-sgx"
    trusted = {
        t["uri"]: t.get("sha256")
        for t in tomllib.loads(toml_bytes.decode())["sgx"]["trusted_files"]
    }
    assert (
        trusted["file:/sanctum/manifest.json"]
        == hashlib.sha256(files["/sanctum/manifest.json"]).hexdigest()
    )


@pytest.mark.registry
def test_registry_to_registry_and_back_with_skopeo(
    image: BuiltImage, registry: RegistryServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    skopeo("copy", image.ref, registry.ref("plain/app", "1"))
    request = _request(
        inputImageName=registry.ref("plain/app", "1"),
        outputImageName=registry.ref("shielded/app", "1"),
    )
    with (
        open_source(request.input_image_name) as source,
        open_sink(request.output_image_name) as sink,
    ):
        first = convert(
            request, source=source, sink=sink, launcher_asset=LAUNCHER, gramine_tools=None
        )
    with (
        open_source(request.input_image_name) as source,
        open_sink(request.output_image_name) as sink,
    ):
        second = convert(
            request, source=source, sink=sink, launcher_asset=LAUNCHER, gramine_tools=None
        )
    assert first.layers_mounted == 2  # Same registry: mounted, not uploaded.
    assert second.image_digest == first.image_digest
    assert second.layers_uploaded == 0  # Nothing original re-uploaded.
    out_dir = tmp_path / "pulled"
    skopeo("copy", registry.ref("shielded/app", "1"), f"oci:{out_dir}:x")
    index = json.loads((out_dir / "index.json").read_text())
    assert index["manifests"][0]["digest"] == first.image_digest
    inspected = json.loads(skopeo("inspect", "--raw", registry.ref("shielded/app", "1")))
    assert len(inspected["layers"]) == 3
    runtime_blob = out_dir / "blobs" / "sha256" / first.runtime_layer_digest.removeprefix("sha256:")
    assert runtime_blob.exists()


class _FailingSink(MemoryImageStore):
    """A sink whose blob uploads fail like an unreachable registry."""

    def put_blob(self, *_args: Any, **_kwargs: Any) -> None:
        raise RegistryUnavailable("registry went away", code="registry.unreachable")


def test_an_upload_failure_is_raised_and_writes_no_manifest(image: BuiltImage) -> None:
    sink = _FailingSink()
    with pytest.raises(RegistryUnavailable):
        _run(image, sink, _request())
    assert not sink.tags


def test_manifest_verification_imports_neither_the_manager_nor_pydantic() -> None:
    code = (
        "import sys, sanctum.converter.manifest, sanctum.converter.sigstruct\n"
        "bad = [m for m in sys.modules if m.startswith(('sanctum.manager', 'pydantic', 'httpx'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_changeset_rule_multi_arch_input_and_docker_archive_output(
    tmp_path: Path, require_tool: Any
) -> None:
    require_tool(str(BUSYBOX), package="busybox-static")
    image = build_image(
        tmp_path / "layered",
        layered_entries(),
        compression=LAYERED_COMPRESSION,
        multi_arch=True,
        config={"Entrypoint": ["/app/tool"], "Cmd": None},
    )
    request = _request(outputImageName=f"docker-archive:{tmp_path / 'out.tar'}")
    with open_source(image.ref) as source, open_sink(request.output_image_name) as sink:
        response = convert(
            request, source=source, sink=sink, launcher_asset=LAUNCHER, gramine_tools=None
        )
    # Read the result back through an independent path: the archive's own files.
    with tarfile.open(tmp_path / "out.tar") as archive:
        names = archive.getnames()
        entry = json.loads(archive.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
        layers = entry["Layers"]
        assert len(layers) == len(LAYERED_COMPRESSION) + 1
        runtime = archive.extractfile(layers[-1]).read()  # type: ignore[union-attr]
    assert any(name.endswith(".json") for name in names)
    # docker-archive may store layers compressed or as plain tar; tarfile reads both.
    with tarfile.open(fileobj=io.BytesIO(runtime)) as layer:
        manifest_json = layer.extractfile("sanctum/manifest.json").read()  # type: ignore[union-attr]
        sigstruct = layer.extractfile("sanctum/manifest.sigstruct").read()  # type: ignore[union-attr]
    manifest = verify_signed_manifest(manifest_json, sigstruct)
    assert response.mrenclave == hashlib.sha256(manifest_json).hexdigest()
    tool = hashlib.sha256(b"#!/bin/sh\necho tool\n").hexdigest()
    assert manifest.trusted_files["/app/tool"] == tool
    assert manifest.trusted_files["/app/tool-hard"] == tool  # Hard link: its target's hash.
    assert "/app/gone.txt" not in manifest.trusted_files  # Whiteout.
    assert "/app/cache/old" not in manifest.trusted_files  # Opaque directory.
    assert manifest.trusted_files["/app/cache/new"] == hashlib.sha256(b"new").hexdigest()
    assert manifest.trusted_files["/etc/motd"] == hashlib.sha256(b"zstd layer\n").hexdigest()
    assert manifest.symlinks["/app/link"] == "tool"
    assert manifest.entrypoint == ("/app/tool",)
    assert manifest.args == ()


def test_a_non_nfc_file_name_is_refused_with_its_path(tmp_path: Path) -> None:
    layer = [file("cafe\u0301.txt", b"x"), file("bin/app", b"y", 0o755)]
    image = build_image(tmp_path / "nfc", [layer], config={"Entrypoint": ["/bin/app"]})
    with pytest.raises(ManifestError) as info:
        _run(image, MemoryImageStore(), _request())
    assert info.value.code == "manifest.not_canonical"
    assert "cafe" in info.value.message


@pytest.mark.registry
def test_registry_to_another_authenticated_registry(
    image: BuiltImage,
    registry: RegistryServer,
    basic_registry: RegistryServer,
    skopeo: Skopeo,
    tmp_path: Path,
) -> None:
    # Enough layers for the parallel downloads and uploads to overlap.
    many = build_image(
        tmp_path / "many",
        [[file(f"l{i}/data.bin", bytes([i]) * (200_000 + i))] for i in range(7)]
        + [[file("bin/app", b"app", 0o755)]],
        config={"Entrypoint": ["/bin/app"]},
    )
    skopeo("copy", many.ref, registry.ref("many/src", "1"))
    assert basic_registry.username is not None
    assert basic_registry.password is not None
    auth = RegistryAuth(basic_registry.username, basic_registry.password)
    request = _request(
        inputImageName=registry.ref("many/src", "1"),
        outputImageName=basic_registry.ref("many/shielded", "1"),
    )
    events: list[ConvertProgress] = []
    with (
        open_source(request.input_image_name) as source,
        open_sink(request.output_image_name, auth=auth) as sink,
    ):
        response = convert(
            request, source=source, sink=sink, launcher_asset=LAUNCHER, gramine_tools=None,
            progress=events.append,
        )  # fmt: skip
    assert response.layers_uploaded == 8
    assert sorted(e.layer for e in events if e.event == "layer-done") == list(range(8))
    # An independent client reads the result back, digest for digest.
    out_dir = tmp_path / "pulled"
    skopeo("copy", "--src-creds", f"{auth.username}:{auth.password}",
           basic_registry.ref("many/shielded", "1"), f"oci:{out_dir}:x")  # fmt: skip
    index = json.loads((out_dir / "index.json").read_text())
    assert index["manifests"][0]["digest"] == response.image_digest
    pulled = Manifest.parse(
        (out_dir / "blobs" / "sha256" / response.image_digest.removeprefix("sha256:")).read_bytes()
    )
    assert pulled.layers[:-1] == Manifest.parse(many.manifest).layers
    # Converting the same image into the same sink uploads nothing original.
    with (
        open_source(request.input_image_name) as source,
        open_sink(request.output_image_name, auth=auth) as sink,
    ):
        again = convert(
            request, source=source, sink=sink, launcher_asset=LAUNCHER, gramine_tools=None
        )
    assert (again.layers_uploaded, again.layers_skipped) == (0, 8)
    assert again.image_digest == response.image_digest
