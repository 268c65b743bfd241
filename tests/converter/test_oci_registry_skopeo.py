"""Sanctum's registry client against Debian's docker-registry, with skopeo as the peer."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from converter_images import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    BuiltImage,
    RegistryServer,
    Skopeo,
    build_image,
    busybox_entries,
    file,
    sha256,
)

from sanctum.converter.analysis import analyse_image
from sanctum.converter.errors import ImageError, RegistryAuthError, RegistryUnavailable
from sanctum.converter.oci import (
    CopyProgress,
    LayoutReference,
    RegistryAuth,
    copy_image,
    open_sink,
    open_source,
)
from sanctum.converter.oci.layout import LayoutSink

pytestmark = pytest.mark.registry


def _push(skopeo: Skopeo, image: BuiltImage, server: RegistryServer, repo: str, *extra: str) -> str:
    creds = [f"--dest-creds={c}" for c in server.creds()]
    skopeo("copy", *creds, *extra, image.ref, server.ref(repo))
    return server.ref(repo)


def test_image_pushed_by_skopeo_is_read_with_identical_digests(
    registry: RegistryServer, skopeo: Skopeo, busybox_image: BuiltImage
):
    ref = _push(skopeo, busybox_image, registry, "read/busybox")
    with open_source(ref) as source:
        manifest = source.manifest()
        assert manifest.digest == busybox_image.manifest_digest
        assert manifest.raw == busybox_image.manifest
        assert source.config().digest == busybox_image.config_digest
        assert source.config().entrypoint == ("/bin/sh",)
        with source.open_blob(manifest.layers[0]) as blob:
            assert sha256(blob.read()) == busybox_image.layers[0]["digest"]
            assert blob.verified
        listing = analyse_image(source)
    assert listing.files["/bin/busybox"].sha256 == sha256(Path("/bin/busybox").read_bytes())[7:]


def test_image_written_by_sanctum_is_pulled_by_skopeo_byte_identical(
    registry: RegistryServer, skopeo: Skopeo, busybox_image: BuiltImage, tmp_path: Path
):
    target = registry.ref("write/busybox", "v1")
    with open_source(busybox_image.ref) as source, open_sink(target) as sink:
        result = copy_image(source, sink)
    assert result.manifest_digest == busybox_image.manifest_digest
    raw = skopeo("inspect", "--raw", target)
    assert raw.encode() == busybox_image.manifest
    skopeo("copy", target, f"oci:{tmp_path / 'pulled'}:v1")
    pulled = json.loads((tmp_path / "pulled" / "index.json").read_text())
    assert pulled["manifests"][0]["digest"] == busybox_image.manifest_digest


def test_second_copy_skips_existing_blobs(registry: RegistryServer, busybox_image: BuiltImage):
    target = registry.ref("skip/busybox", "v1")
    with open_source(busybox_image.ref) as source, open_sink(target) as sink:
        first = copy_image(source, sink)
        second = copy_image(source, sink, tag="v2")
    assert len(first.uploaded) == 2
    assert second.uploaded == ()
    assert set(second.skipped) == set(first.uploaded)


def test_chunked_upload_is_read_back_identical(
    registry: RegistryServer, skopeo: Skopeo, tmp_path: Path
):
    payload = bytes(range(256)) * 4096  # 1 MiB, several chunks of 100 KiB.
    image = build_image(tmp_path / "img", [[file("data.bin", payload)]], compression="none")
    target = registry.ref("chunked/data", "v1")
    with open_source(image.ref) as source, open_sink(target, chunk_size=100_000) as sink:
        copy_image(source, sink)
        assert sink.stats["chunks"] >= 10
    assert skopeo("inspect", "--raw", target).encode() == image.manifest
    with open_source(target) as source:
        assert analyse_image(source).files["/data.bin"].sha256 == sha256(payload)[7:]


def test_cross_repository_mount(registry: RegistryServer, busybox_image: BuiltImage):
    first = registry.ref("mount/origin", "v1")
    with open_source(busybox_image.ref) as source, open_sink(first) as sink:
        copy_image(source, sink)
    second = registry.ref("mount/target", "v1")
    with open_source(first) as source, open_sink(second) as sink:
        result = copy_image(source, sink)
    assert len(result.mounted) == 2
    assert result.uploaded == ()
    assert result.manifest_digest == busybox_image.manifest_digest


def test_basic_auth(basic_registry: RegistryServer, skopeo: Skopeo, busybox_image: BuiltImage):
    ref = _push(skopeo, busybox_image, basic_registry, "basic/busybox")
    auth = RegistryAuth("alice", "s3cret-pw")
    with open_source(ref, auth=auth) as source:
        assert source.manifest().digest == busybox_image.manifest_digest
    with (
        open_source(busybox_image.ref) as source,
        open_sink(basic_registry.ref("basic/copy"), auth=auth) as sink,
    ):
        copy_image(source, sink)
    with pytest.raises(RegistryAuthError) as info, open_source(ref) as source:
        source.manifest()
    assert info.value.code == "registry.auth_failed"
    with (
        pytest.raises(RegistryAuthError),
        open_source(ref, auth=RegistryAuth("alice", "wrong")) as source,
    ):
        source.manifest()


def test_bearer_token_auth_and_docker_config(
    token_registry: RegistryServer, skopeo: Skopeo, busybox_image: BuiltImage, tmp_path: Path
):
    assert token_registry.token_server is not None
    ref = _push(skopeo, busybox_image, token_registry, "token/busybox")
    config = tmp_path / "config.json"
    pair = base64_pair("bob", "t0ken-pw")
    config.write_text(json.dumps({"auths": {token_registry.host: {"auth": pair}}}))
    with open_source(ref, docker_config=config) as source:
        assert source.manifest().digest == busybox_image.manifest_digest
        analyse_image(source)
    scopes = [s for q in token_registry.token_server.requests for s in q.get("scope", [])]
    assert "repository:token/busybox:pull" in scopes
    # Writing needs push rights; the token endpoint grants them to bob.
    target = token_registry.ref("token/copy", "v1")
    with open_source(busybox_image.ref) as source, open_sink(target, docker_config=config) as sink:
        copy_image(source, sink)
    creds = f"--creds={token_registry.username}:{token_registry.password}"
    assert skopeo("inspect", creds, "--raw", target).encode() == busybox_image.manifest
    # A mount from another repository asks the token server for pull rights on it too.
    mounted = token_registry.ref("token/mounted", "v1")
    with (
        open_source(target, docker_config=config) as source,
        open_sink(mounted, docker_config=config) as sink,
    ):
        assert len(copy_image(source, sink).mounted) == 2
    scopes = [s for q in token_registry.token_server.requests for s in q.get("scope", [])]
    assert "repository:token/copy:pull" in scopes
    assert "repository:token/mounted:pull,push" in scopes
    # Without credentials the token carries no access and the registry refuses.
    with pytest.raises(RegistryAuthError), open_source(ref) as source:
        source.manifest()


def base64_pair(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_multi_arch_index_resolves_to_amd64(
    registry: RegistryServer, skopeo: Skopeo, tmp_path: Path
):
    image = build_image(tmp_path / "multi", [busybox_entries()], multi_arch=True)
    ref = _push(skopeo, image, registry, "multi/busybox", "--all")
    with open_source(ref) as source:
        assert source.manifest().digest == image.manifest_digest
        index = source.index()
        assert index is not None
        assert index.digest == image.index_digest
        assert source.config().architecture == "amd64"


def test_missing_image_and_corrupt_blob(
    registry: RegistryServer, busybox_image: BuiltImage, tmp_path: Path
):
    with pytest.raises(ImageError) as info, open_source(registry.ref("absent/x")) as source:
        source.manifest()
    assert info.value.code == "image.not_found"
    # Corrupt the layer in the layout: the copy fails and the registry gets no manifest.
    layer = busybox_image.layers[0]["digest"].removeprefix("sha256:")
    blob = busybox_image.layout / "blobs" / "sha256" / layer
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    target = registry.ref("corrupt/busybox")
    with (
        pytest.raises(ImageError) as info,
        open_source(busybox_image.ref) as source,
        open_sink(target) as sink,
    ):
        copy_image(source, sink)
    assert info.value.code == "image.digest_mismatch"
    with open_sink(target) as sink:
        assert not sink.has_blob(busybox_image.layers[0]["digest"])
    with pytest.raises(ImageError), open_source(target) as source:
        source.manifest()
    # Nothing is written to a layout either.
    out = tmp_path / "out"
    with pytest.raises(ImageError), open_source(busybox_image.ref) as source:
        copy_image(source, LayoutSink(LayoutReference(out, "x")))
    assert not (out / "blobs" / "sha256" / layer).exists()
    assert json.loads((out / "index.json").read_text())["manifests"] == []


def test_docker_schema2_image_and_progress_events(
    registry: RegistryServer, skopeo: Skopeo, tmp_path: Path
):
    image = build_image(tmp_path / "docker", [[file("a", b"docker media types")], []], docker=True)
    target = registry.ref("docker/schema2", "v1")
    events: list[CopyProgress] = []
    with open_source(image.ref) as source, open_sink(target) as sink:
        result = copy_image(source, sink, progress=events.append)
    assert result.media_type == DOCKER_MANIFEST
    assert skopeo("inspect", "--raw", target).encode() == image.manifest
    inspected = json.loads(skopeo("inspect", target))
    assert inspected["Digest"] == image.manifest_digest
    assert inspected["Layers"] == [layer["digest"] for layer in image.layers]
    kinds = [(e.event, e.descriptor.digest) for e in events]
    for digest in (*[layer["digest"] for layer in image.layers], image.config_digest):
        assert ("start", digest) in kinds
        assert ("uploaded", digest) in kinds
    done = [e for e in events if e.event == "uploaded"]
    assert all(e.transferred == e.descriptor.size for e in done)
    # Docker's archive format via skopeo, read back by Sanctum.
    archive = tmp_path / "pulled.tar"
    skopeo("copy", target, f"docker-archive:{archive}:docker/schema2:v1")
    with open_source(f"docker-archive:{archive}:docker/schema2:v1") as source:
        assert source.config().digest == image.config_digest
        assert analyse_image(source).files["/a"].sha256 == sha256(b"docker media types")[7:]


def test_zero_byte_blob_round_trip(registry: RegistryServer, skopeo: Skopeo, tmp_path: Path):
    image = build_image(tmp_path / "img", [[file("x", b"x")], b""], compression=["gzip", "none"])
    target = registry.ref("zero/blob", "v1")
    with open_source(image.ref) as source, open_sink(target) as sink:
        copy_image(source, sink)
    assert skopeo("inspect", "--raw", target).encode() == image.manifest
    with open_source(target) as source:
        assert set(analyse_image(source).files) == {"/x"}


def test_tls_registry_with_ca_bundle(
    tls_registry: RegistryServer, skopeo: Skopeo, busybox_image: BuiltImage
):
    assert tls_registry.ca_bundle is not None
    target = tls_registry.ref("tls/busybox", "v1")
    ca = str(tls_registry.ca_bundle)
    with open_source(busybox_image.ref) as source, open_sink(target, verify=ca) as sink:
        copy_image(source, sink)
        assert sink.client.base_url.startswith("https://")
    assert skopeo("inspect", "--raw", target).encode() == busybox_image.manifest
    with open_source(target, verify=ca) as source:
        assert source.manifest().digest == busybox_image.manifest_digest
    # Without the CA the certificate does not verify, and there is no plain-HTTP downgrade.
    with pytest.raises(RegistryUnavailable) as info, open_source(target) as source:
        source.manifest()
    assert info.value.code == "registry.tls_error"


def test_parallel_copy_of_many_layers_and_a_corrupt_one(
    registry: RegistryServer, skopeo: Skopeo, tmp_path: Path
):
    layers = [[file(f"layer{i}", bytes([i]) * (50_000 + i))] for i in range(6)]
    image = build_image(tmp_path / "img", layers, compression=["gzip", "zstd"] * 3)
    target = registry.ref("parallel/image", "v1")
    events: list[CopyProgress] = []
    with open_source(image.ref) as source, open_sink(target) as sink:
        result = copy_image(source, sink, workers=4, progress=events.append)
    assert len(result.uploaded) == 7
    assert sum(1 for e in events if e.event == "uploaded") == 7
    assert skopeo("inspect", "--raw", target).encode() == image.manifest
    # One corrupt layer among many: the copy fails and no manifest is written.
    blob = image.layout / "blobs" / "sha256" / image.layers[4]["digest"][7:]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    broken = registry.ref("parallel/broken", "v1")
    with (
        pytest.raises(ImageError) as info,
        open_source(image.ref) as source,
        open_sink(broken) as sink,
    ):
        copy_image(source, sink, workers=4)
    assert info.value.code == "image.digest_mismatch"
    with open_sink(broken) as sink:
        assert not sink.has_blob(image.layers[4]["digest"])
    with pytest.raises(ImageError), open_source(broken) as source:
        source.manifest()


def test_manifest_referencing_missing_blobs_is_refused(
    registry: RegistryServer, busybox_image: BuiltImage
):
    with pytest.raises(ImageError) as info, open_sink(registry.ref("incomplete/x")) as sink:
        sink.put_manifest(busybox_image.manifest, OCI_MANIFEST)
    assert info.value.code == "image.incomplete"
