"""OCI layouts and docker-archive tarballs: round trips, with skopeo as the independent peer."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from converter_images import (
    BuiltImage,
    Skopeo,
    build_image,
    busybox_entries,
    file,
    sha256,
)

from sanctum.converter.analysis import analyse_image
from sanctum.converter.errors import ImageError
from sanctum.converter.oci import (
    ArchiveReference,
    copy_image,
    open_sink,
    open_source,
)
from sanctum.converter.oci.archive import ArchiveSink


def test_layout_round_trip_keeps_manifest_bytes(busybox_image: BuiltImage, tmp_path: Path):
    out = tmp_path / "copy"
    with open_source(busybox_image.ref) as source, open_sink(f"oci:{out}:v2") as sink:
        result = copy_image(source, sink)
    assert result.manifest_digest == busybox_image.manifest_digest
    assert len(result.uploaded) == 2
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "v2"}
    with open_source(f"oci:{out}:v2") as copy:
        assert copy.manifest().raw == busybox_image.manifest
        assert copy.config().raw == busybox_image.config
    # A second tag in the same layout shares the blobs and keeps the first tag.
    with open_source(busybox_image.ref) as source, open_sink(f"oci:{out}:v3") as sink:
        again = copy_image(source, sink)
    assert again.uploaded == ()
    names = [
        m["annotations"]["org.opencontainers.image.ref.name"]
        for m in json.loads((out / "index.json").read_text())["manifests"]
    ]
    assert names == ["v2", "v3"]


@pytest.mark.registry
def test_layout_written_by_sanctum_is_read_by_skopeo(
    busybox_image: BuiltImage, skopeo: Skopeo, tmp_path: Path
):
    out = tmp_path / "ours"
    with open_source(busybox_image.ref) as source, open_sink(f"oci:{out}:t") as sink:
        copy_image(source, sink)
    assert skopeo("inspect", "--raw", f"oci:{out}:t").encode() == busybox_image.manifest
    skopeo("copy", f"oci:{out}:t", f"oci:{tmp_path / 'theirs'}:t")
    with open_source(f"oci:{tmp_path / 'theirs'}:t") as theirs:
        assert theirs.manifest().digest == busybox_image.manifest_digest


def test_layout_errors(tmp_path: Path, busybox_image: BuiltImage):
    with pytest.raises(ImageError) as info, open_source(f"oci:{tmp_path / 'none'}") as src:
        src.manifest()
    assert info.value.code == "image.not_found"
    with pytest.raises(ImageError) as info, open_source(f"{busybox_image.ref}-nope") as src:
        src.manifest()
    assert info.value.code == "image.not_found"
    # Without a tag, a layout with exactly one image is read.
    with open_source(f"oci:{busybox_image.layout}") as src:
        assert src.manifest().digest == busybox_image.manifest_digest
    (tmp_path / "notalayout").mkdir()
    (tmp_path / "notalayout" / "file").write_text("x")
    with pytest.raises(ImageError) as info:
        open_sink(f"oci:{tmp_path / 'notalayout'}:x")
    assert info.value.code == "image.not_a_layout"
    # A manifest whose blobs are missing is refused.
    with pytest.raises(ImageError) as info, open_sink(f"oci:{tmp_path / 'empty'}:x") as sink:
        sink.put_manifest(busybox_image.manifest, "application/vnd.oci.image.manifest.v1+json")
    assert info.value.code == "image.incomplete"


@pytest.mark.registry
def test_docker_archive_written_by_sanctum_is_read_by_skopeo(
    skopeo: Skopeo, tmp_path: Path, require_tool
):
    require_tool("/bin/busybox", package="busybox-static")
    image = build_image(
        tmp_path / "img",
        [busybox_entries(), [file("etc/motd", b"zstd")]],
        compression=["gzip", "zstd"],
    )
    archive = tmp_path / "image.tar"
    with open_source(image.ref) as source, open_sink(f"docker-archive:{archive}:app:1") as sink:
        copy_image(source, sink)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        index = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert index[0]["RepoTags"] == ["app:1"]
    assert index[0]["Config"] == f"{image.config_digest[7:]}.json"
    assert index[0]["Layers"] == [f"{d[7:]}.tar" for d in image.diff_ids]
    assert names == [*sorted(names[:-1]), "manifest.json"]
    # skopeo reads it: same config, layers named by their diff_ids.
    raw = json.loads(skopeo("inspect", "--raw", f"docker-archive:{archive}"))
    assert raw["config"]["digest"] == image.config_digest
    assert [layer["digest"] for layer in raw["layers"]] == image.diff_ids
    # Writing the same image again gives the same tarball, byte for byte.
    again = tmp_path / "again.tar"
    with open_source(image.ref) as source, open_sink(f"docker-archive:{again}:app:1") as sink:
        copy_image(source, sink)
    assert again.read_bytes() == archive.read_bytes()


@pytest.mark.registry
def test_docker_archive_written_by_skopeo_is_read_by_sanctum(
    busybox_image: BuiltImage, skopeo: Skopeo, tmp_path: Path
):
    archive = tmp_path / "skopeo.tar"
    skopeo("copy", busybox_image.ref, f"docker-archive:{archive}:example/busybox:1")
    theirs = json.loads(skopeo("inspect", "--raw", f"docker-archive:{archive}"))
    with open_source(f"docker-archive:{archive}:example/busybox:1") as source:
        manifest = source.manifest()
        assert manifest.config.digest == busybox_image.config_digest
        assert [layer.digest for layer in manifest.layers] == busybox_image.diff_ids
        assert [layer.digest for layer in manifest.layers] == [
            layer["digest"] for layer in theirs["layers"]
        ]
        listing = analyse_image(source)
        assert listing.files["/bin/busybox"].sha256 == sha256(Path("/bin/busybox").read_bytes())[7:]
        # And on to a layout: the layers are now uncompressed, the config identical.
        with open_sink(f"oci:{tmp_path / 'layout'}:x") as sink:
            copy_image(source, sink)
    with open_source(f"oci:{tmp_path / 'layout'}:x") as copy:
        assert copy.config().digest == busybox_image.config_digest


def test_docker_archive_with_compressed_layer_files(tmp_path: Path):
    # docker load accepts compressed layer files; they are presented as they are.
    image = build_image(tmp_path / "img", [[file("a", b"a")]], compression="gzip")
    layer = (image.layout / "blobs" / "sha256" / image.layers[0]["digest"][7:]).read_bytes()
    archive = tmp_path / "compressed.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in (
            ("config.json", image.config),
            ("layer.tar.gz", layer),
            (
                "manifest.json",
                json.dumps(
                    [{"Config": "config.json", "RepoTags": ["x:1"], "Layers": ["layer.tar.gz"]}]
                ).encode(),
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with open_source(f"docker-archive:{archive}:x:1") as source:
        assert source.manifest().layers[0].digest == image.layers[0]["digest"]
        assert analyse_image(source).files["/a"].sha256 == sha256(b"a")[7:]


def test_docker_archive_errors(tmp_path: Path, busybox_image: BuiltImage):
    with pytest.raises(ImageError) as info:
        open_source(f"docker-archive:{tmp_path / 'missing.tar'}")
    assert info.value.code == "image.not_found"
    (tmp_path / "junk.tar").write_bytes(b"junk" * 100)
    with pytest.raises(ImageError) as info:
        open_source(f"docker-archive:{tmp_path / 'junk.tar'}")
    assert info.value.code == "image.malformed"
    # Corrupt staged layer: the tarball is never created.
    sink = ArchiveSink(ArchiveReference(tmp_path / "out.tar", "x:1"))
    layer = busybox_image.layers[0]
    blob = busybox_image.layout / "blobs" / "sha256" / layer["digest"][7:]
    data = bytearray(blob.read_bytes())
    data[-20] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ImageError), open_source(busybox_image.ref) as source, sink:
        copy_image(source, sink)
    assert not (tmp_path / "out.tar").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # An index cannot go into a docker-archive.
    with (
        pytest.raises(ImageError) as info,
        ArchiveSink(ArchiveReference(tmp_path / "idx.tar")) as sink,
    ):
        sink.put_manifest(
            b'{"schemaVersion":2,"manifests":[]}', "application/vnd.oci.image.index.v1+json"
        )
    assert info.value.code == "image.unsupported_media_type"


def test_multi_arch_layout_copy_takes_linux_amd64(tmp_path: Path):
    image = build_image(tmp_path / "multi", [[file("a", b"amd64")]], multi_arch=True)
    with open_source(image.ref) as source, open_sink(f"oci:{tmp_path / 'out'}:x") as sink:
        index = source.index()
        assert index is not None
        assert index.digest == image.index_digest
        result = copy_image(source, sink)
    assert result.manifest_digest == image.manifest_digest
    # Only linux/arm64 left in the index: refused with a clear code.
    doc = json.loads((image.layout / "blobs" / "sha256" / image.index_digest[7:]).read_bytes())
    doc["manifests"] = doc["manifests"][:1]
    raw = json.dumps(doc).encode()
    (image.layout / "blobs" / "sha256" / sha256(raw)[7:]).write_bytes(raw)
    top = json.loads((image.layout / "index.json").read_text())
    top["manifests"][0] |= {"digest": sha256(raw), "size": len(raw)}
    (image.layout / "index.json").write_text(json.dumps(top))
    with pytest.raises(ImageError) as info, open_source(image.ref) as source:
        source.manifest()
    assert info.value.code == "image.no_amd64"
