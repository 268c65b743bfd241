"""Image references, the manifest/index/config model and verifying blob streams."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanctum.converter.errors import ImageError
from sanctum.converter.oci import (
    ArchiveReference,
    BlobReader,
    Descriptor,
    ImageConfig,
    Index,
    LayoutReference,
    Manifest,
    MemoryImageStore,
    RegistryReference,
    copy_image,
    parse_image_reference,
)
from sanctum.converter.oci.model import (
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    digest_of,
    layer_compression,
    parse_manifest_or_index,
)
from sanctum.errors import UsageError

D1 = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docker://127.0.0.1:5000/app:1.0", RegistryReference("127.0.0.1:5000", "app", "1.0")),
        ("docker://busybox", RegistryReference("docker.io", "library/busybox", "latest")),
        ("docker://localhost/a/b@" + D1, RegistryReference("localhost", "a/b", None, D1)),
        (
            "registry.example.com/team/app:v2@" + D1,
            RegistryReference("registry.example.com", "team/app", "v2", D1),
        ),
        ("user/app", RegistryReference("docker.io", "user/app", "latest")),
        ("oci:/tmp/layout:tag", LayoutReference(Path("/tmp/layout"), "tag")),
        ("oci:relative", LayoutReference(Path("relative"), None)),
        ("docker-archive:/x.tar:app:1", ArchiveReference(Path("/x.tar"), "app:1")),
        ("docker-archive:/x.tar", ArchiveReference(Path("/x.tar"), None)),
    ],
)
def test_parse_image_reference(text, expected):
    assert parse_image_reference(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " docker://x/y",
        "docker://Host.com/UPPER:1",
        "docker://host.com/app@sha256:short",
        "docker://host.com/app:bad tag",
        "ftp://x/y",
        "oci:",
        "docker://host.com/app:" + "t" * 200,
    ],
)
def test_bad_references(text):
    with pytest.raises(UsageError) as info:
        parse_image_reference(text)
    assert info.value.code == "image.bad_reference"


def test_reference_text_forms():
    ref = parse_image_reference("docker://127.0.0.1:5000/a/b:c")
    assert isinstance(ref, RegistryReference)
    assert str(ref) == "docker://127.0.0.1:5000/a/b:c"
    assert ref.api_host == "127.0.0.1:5000"
    assert parse_image_reference("busybox").api_host == "registry-1.docker.io"  # type: ignore[union-attr]
    assert str(ref.with_tag("d")) == "docker://127.0.0.1:5000/a/b:d"
    assert str(parse_image_reference("oci:/l:t")) == "oci:/l:t"


@given(
    repo=st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}", fullmatch=True),
    tag=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    port=st.integers(1, 65535),
)
def test_registry_reference_round_trip(repo, tag, port):
    ref = parse_image_reference(f"docker://127.0.0.1:{port}/{repo}:{tag}")
    assert parse_image_reference(str(ref)) == ref
    assert ref == RegistryReference(f"127.0.0.1:{port}", repo, tag)


def _manifest(**overrides) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": D1, "size": 3}],
    }
    doc.update(overrides)
    return json.dumps(doc, indent=3).encode()


def test_manifest_keeps_exact_bytes():
    raw = _manifest(annotations={"a": "b"})
    manifest = Manifest.parse(raw)
    assert manifest.raw == raw
    assert manifest.digest == digest_of(raw)
    assert manifest.layers[0].size == 3
    assert manifest.annotations == {"a": "b"}
    assert manifest.descriptor == Descriptor(OCI_MANIFEST, manifest.digest, len(raw))


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\xff", "image.malformed"),
        (b"[]", "image.malformed"),
        (b'{"schemaVersion": 2, "schemaVersion": 2}', "image.malformed"),
        (_manifest(schemaVersion=1), "image.unsupported_media_type"),
        (_manifest(schemaVersion=3), "image.malformed"),
        (
            _manifest(mediaType="application/vnd.docker.distribution.manifest.v1+prettyjws"),
            "image.unsupported_media_type",
        ),
        (_manifest(layers={}), "image.malformed"),
        (
            _manifest(layers=[{"mediaType": OCI_LAYER_GZIP, "digest": "md5:x", "size": 1}]),
            "image.malformed",
        ),
        (
            _manifest(layers=[{"mediaType": OCI_LAYER_GZIP, "digest": D1, "size": -1}]),
            "image.malformed",
        ),
        (
            _manifest(layers=[{"mediaType": OCI_LAYER_GZIP, "digest": D1, "size": True}]),
            "image.malformed",
        ),
        (
            _manifest(config={"mediaType": "text/plain", "digest": D1, "size": 1}),
            "image.unsupported_media_type",
        ),
        (_manifest(mediaType=OCI_INDEX), "image.unsupported_media_type"),
    ],
)
def test_manifest_is_parsed_strictly(raw, code):
    with pytest.raises(ImageError) as info:
        Manifest.parse(raw)
    assert info.value.code == code


def test_build_manifest_is_deterministic_and_parses():
    config = Descriptor(OCI_CONFIG, D1, 10)
    layer = Descriptor(OCI_LAYER_GZIP, D1, 3, annotations={"k": "v"})
    first = Manifest.build(config, [layer], annotations={"z": "1", "a": "2"})
    second = Manifest.build(config, [layer], annotations={"a": "2", "z": "1"})
    assert first.raw == second.raw
    assert first.layers == (layer,)
    docker = Manifest.build(config, [layer], media_type=DOCKER_MANIFEST)
    assert docker.media_type == DOCKER_MANIFEST


def test_index_selects_linux_amd64():
    amd = {
        "mediaType": OCI_MANIFEST,
        "digest": D1,
        "size": 1,
        "platform": {"os": "linux", "architecture": "amd64"},
    }
    arm = amd | {"platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}
    index = Index.parse(json.dumps({"schemaVersion": 2, "manifests": [arm, amd]}).encode())
    assert index.media_type == OCI_INDEX
    assert index.select().platform.architecture == "amd64"  # type: ignore[union-attr]
    only_arm = Index.parse(json.dumps({"schemaVersion": 2, "manifests": [arm]}).encode())
    with pytest.raises(ImageError) as info:
        only_arm.select()
    assert info.value.code == "image.no_amd64"
    assert "linux/arm64" in info.value.message
    assert isinstance(parse_manifest_or_index(index.raw), Index)
    assert isinstance(parse_manifest_or_index(_manifest()), Manifest)


def _config(**run) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": run,
            "rootfs": {"type": "layers", "diff_ids": [D1]},
            "history": [{"created_by": "x", "empty_layer": False}],
        }
    ).encode()


def test_image_config_fields():
    config = ImageConfig.parse(
        _config(
            Entrypoint=["/app"],
            Cmd=["--serve"],
            Env=["A=1", "B=x=y", "A=2"],
            WorkingDir="/srv",
            User="1000:1000",
            Labels={"l": "v"},
            ExposedPorts={"80/tcp": {}},
            StopSignal="SIGTERM",
        )
    )
    assert config.entrypoint == ("/app",)
    assert config.cmd == ("--serve",)
    assert config.env_map == {"A": "2", "B": "x=y"}
    assert (config.workdir, config.user, config.stop_signal) == ("/srv", "1000:1000", "SIGTERM")
    assert config.labels == {"l": "v"}
    assert config.exposed_ports == ("80/tcp",)
    assert config.diff_ids == (D1,)
    assert config.history[0].created_by == "x"
    assert config.to_json()["config"]["Entrypoint"] == ["/app"]
    bare = ImageConfig.parse(_config())
    assert (bare.entrypoint, bare.cmd, bare.env, bare.workdir) == (None, None, (), None)


@pytest.mark.parametrize(
    "raw",
    [
        _config(Entrypoint="/bin/sh"),
        _config(Env=[1]),
        json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "x"}}).encode(),
        json.dumps({"architecture": 1, "os": "linux"}).encode(),
    ],
)
def test_image_config_is_strict(raw):
    with pytest.raises(ImageError):
        ImageConfig.parse(raw)


def test_layer_compression():
    assert layer_compression(OCI_LAYER_GZIP) == "gzip"
    assert layer_compression("application/vnd.oci.image.layer.v1.tar+zstd") == "zstd"
    with pytest.raises(ImageError) as info:
        layer_compression("application/x-unknown")
    assert info.value.code == "image.unsupported_media_type"


def test_blob_reader_verifies():
    data = b"hello world" * 1000
    good = Descriptor("application/octet-stream", digest_of(data), len(data))
    reader = BlobReader(io.BytesIO(data), good)
    assert reader.read(5) == b"hello"
    assert not reader.verified
    assert reader.finish() == len(data)
    assert reader.verified
    assert BlobReader(iter([data[:7], data[7:]]), good).readall() == data
    # Same length, different content.
    bad = bytearray(data)
    bad[-1] ^= 1
    with pytest.raises(ImageError) as info:
        BlobReader(io.BytesIO(bytes(bad)), good).readall()
    assert info.value.code == "image.digest_mismatch"
    # Too long: refused before the surplus is returned.
    reader = BlobReader(io.BytesIO(data + b"!"), good)
    with pytest.raises(ImageError):
        reader.readall()
    # Too short.
    with pytest.raises(ImageError):
        BlobReader(io.BytesIO(data[:-1]), good).readall()
    # chunks() holds the last chunk back until the digest is checked.
    seen: list[bytes] = []
    chunks = BlobReader(io.BytesIO(bytes(bad)), good).chunks(4096)
    with pytest.raises(ImageError):
        seen.extend(chunks)
    assert sum(map(len, seen)) < len(data)


def test_memory_store_round_trip():
    store = MemoryImageStore()
    config = store.add_blob(_config(), OCI_CONFIG)
    layer = store.add_blob(b"layer", OCI_LAYER_GZIP)
    manifest = Manifest.build(config, [layer])
    store.put_manifest(manifest.raw, manifest.media_type)
    copy = MemoryImageStore()
    result = copy_image(store, copy, tag="v1")
    assert result.manifest_digest == manifest.digest
    assert copy.tags == {"v1": manifest.digest}
    assert result.image_size == len(manifest.raw) + config.size + layer.size
    again = copy_image(store, copy, tag="v1")
    assert again.uploaded == ()
    missing = MemoryImageStore()
    with pytest.raises(ImageError) as info:
        missing.put_manifest(manifest.raw, manifest.media_type)
    assert info.value.code == "image.not_found"
